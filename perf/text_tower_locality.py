"""How local is SLUG's one-layer edit of the embedded text-to-image model's text encoder, per text-tower design?

For each design (layers x width) this trains only the CLIP whose text tower becomes the text encoder
(`models/canvas_clip.train_clip`, minutes, not the UNet's hour), takes SLUG's CLIP-loss forget gradient for
a few target styles, and for every Pareto-front text layer finds the smallest step (in units of ||W|| / ||g||)
that leaves none of the target's held-out images matched to the target among the style captions of their
object. At that step it prints how far the UNet's contexts (the encoder's hidden states at every position)
move, relative to their norm, for the target's prompts, the other styles' prompts and the empty prompt (the
guidance baseline), and the other styles' CLIP accuracy. "deepest" marks the layer SLUG's Stable Diffusion
rule edits (`methods/slug.deepest_layer`). docs/RESULTS.md (unlearncanvas, 2026-12-08) holds a run.

    OMP_NUM_THREADS=1 python perf/text_tower_locality.py 2x64,6x64 [TARGET_INDEX,...]
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from unlearnbench.benchmarks.unlearncanvas import text_encoder_layer_groups
from unlearnbench.contrastive import contrastive_loss
from unlearnbench.datasets.synthetic.canvas import make_canvas_data, prompt
from unlearnbench.methods.slug import deepest_layer, layer_statistics
from unlearnbench.models.canvas_clip import train_clip
from unlearnbench.models.tiny_diffusion import PRESETS, build_model, build_tokenizer

STEPS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.4, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)


def gradients(model, partner, data, target: int, groups: list[str]) -> tuple[dict, dict]:
    """SLUG's forget gradient (1 - cos of the target's images and its name) and retain gradient (CLIP's
    contrastive loss on 512 other images with their captions), as the unlearncanvas suite computes them."""
    train, params = data.splits["train"], dict(model.named_parameters())
    forget = torch.nonzero(train.style_labels == target).flatten()
    pool = torch.nonzero(train.style_labels != target).flatten()
    retain = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:512]]
    with torch.no_grad():
        images = partner.image_embeds(train.images()[forget])
    loss = (1 - images @ partner.text_embeds(model.pooled_prompts([data.styles[target]])).T).mean()
    g_f = dict(zip(groups, torch.autograd.grad(loss, [params[n] for n in groups], allow_unused=True)))
    g_f = {n: g if g is not None else torch.zeros_like(params[n]) for n, g in g_f.items()}
    g_r = {n: torch.zeros_like(params[n]) for n in groups}
    captions = data.captions("train")
    for chunk in retain.split(128):
        with torch.no_grad():
            images = partner.image_embeds(train.images()[chunk])
        texts = [captions[i] for i in chunk.tolist()]
        same = torch.tensor([[a == b for b in texts] for a in texts])
        loss = contrastive_loss(partner.logit_scale.exp() * images @ partner.text_embeds(model.pooled_prompts(texts)).T,
                                same)
        for n, g in zip(groups, torch.autograd.grad(loss, [params[n] for n in groups], allow_unused=True)):
            if g is not None:
                g_r[n] += g * len(chunk) / len(retain)
    return g_f, g_r


def style_hits(model, partner, prompts, test_images, test, grid: tuple[int, int]) -> torch.Tensor:
    """Per held-out image: is its style the best match among the style captions of its object?"""
    texts = partner.text_embeds(model.pooled_prompts(prompts)).view(*grid, -1)
    sims = torch.einsum("nd,sod->nso", test_images, texts)[torch.arange(len(test_images)), :, test.object_labels]
    return sims.argmax(1) == test.style_labels


def main(designs: list[tuple[int, int]], targets: list[int]) -> None:
    base = PRESETS["tiny"]
    data = make_canvas_data(base.data)
    n_styles, n_objects = len(data.styles), len(data.objects)
    test = data.splits["test"]
    prompts = [prompt(s, o) for s in data.styles for o in data.objects]
    prompt_style = torch.arange(n_styles).repeat_interleave(n_objects)
    for layers, width in designs:
        cfg = dataclasses.replace(base, text_layers=layers, text_width=width, text_heads=max(4, width // 32))
        torch.manual_seed(cfg.seed)  # as tiny_diffusion.train: on one thread, 2x64 is the shipped text encoder
        model = build_model(cfg, build_tokenizer(cfg.context_length))
        partner, bars = train_clip(model, data, cfg.clip)
        model.eval()
        params, groups = dict(model.named_parameters()), list(text_encoder_layer_groups(model))
        with torch.no_grad():
            contexts = model.encode_prompts(prompts + [""])
            test_images = partner.image_embeds(test.images())

        print(f"DESIGN {layers}x{width}: CLIP held-out style {bars['style_acc']:.3f}, object {bars['object_acc']:.3f}")
        for target in targets:
            g_f, g_r = gradients(model, partner, data, target, groups)
            stats = layer_statistics(model, g_f, g_r, dict.fromkeys(groups, "text"))
            front = stats[stats.on_front].layer.tolist()
            deepest = deepest_layer(stats[stats.on_front])
            for layer in front:
                w0, grad = params[layer].detach().clone(), g_f[layer]
                unit = w0.norm().item() / grad.norm().item()
                line = "no step up to 32x forgets"
                for scale in STEPS:
                    with torch.no_grad():
                        params[layer].copy_(w0 + scale * unit * grad)
                        hits = style_hits(model, partner, prompts, test_images, test, (n_styles, n_objects))
                        if hits[test.style_labels == target].any():
                            continue
                        moved = model.encode_prompts(prompts + [""]) - contexts
                    move = moved.flatten(1).norm(dim=1) / contexts.flatten(1).norm(dim=1)
                    others = move[:-1][prompt_style != target]
                    line = (f"step {scale}x: target {move[:-1][prompt_style == target].mean():.3f}, other styles "
                            f"{others.mean():.3f} (max {others.max():.3f}), empty prompt {move[-1]:.3f}; other styles' "
                            f"CLIP accuracy {hits[test.style_labels != target].float().mean():.3f}")
                    break
                with torch.no_grad():
                    params[layer].copy_(w0)
                tag = "deepest" if layer == deepest else "front"
                print(f"  {data.styles[target]!r} {tag} {layer}: {line}", flush=True)


if __name__ == "__main__":
    chosen = [tuple(int(x) for x in d.split("x")) for d in sys.argv[1].split(",")]
    main(chosen, [int(t) for t in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 3, 6, 9])

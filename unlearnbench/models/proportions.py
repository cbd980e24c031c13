"""How each model's parameters divide among token table, towers and block types, real beside embedded.

Methods that work on "all parameters" (SalUn's saliency mask, SSD's Fisher statistics, SLUG's layer
ranking) see a model through these proportions, so an embedded model should be shaped like its real
counterpart. ``python -m unlearnbench.models.proportions`` prints the table docs/RESULTS.md quotes: the real
architectures are built on the meta device (no memory, no weights), the embedded ones are the shipped
models.
"""

from __future__ import annotations

import re

import torch
from torch import nn

# (share, pattern on the parameter name); the first match wins.
TOKEN_TABLE = re.compile(r"(^|\.)(token_embedding|embed_tokens)\.weight$|(^|\.)token_embedding$")
TOWERS = (("image tower", re.compile(r"^(visual|vision_model|vision_tower|model\.vision_tower|vision)\.")),
          ("projector", re.compile(r"multi_modal_projector")),
          ("language model", re.compile(r"^(model\.language_model|language_model|lm_head)")),
          ("UNet", re.compile(r"^unet\.")),
          ("VAE", re.compile(r"^vae\.")),
          ("text tower", re.compile(r".")))
# MLP first: a diffusers transformer block's feed-forward sits under ".attentions."
BLOCKS = (("MLP", re.compile(r"(mlp|\.ff\.|feed_forward|c_fc|c_proj)")),
          ("attention", re.compile(r"(attn|attention|self_attn|\.q_proj|\.k_proj|\.v_proj|out_proj)")),
          ("conv", re.compile(r"(conv|resnets|downsamplers|upsamplers)")))


def parameter_shares(named: dict[str, int]) -> dict[str, float]:
    """Share of the parameters (name -> count) in the token table, each tower and each block type."""
    total = sum(named.values())
    shares: dict[str, float] = {"parameters": float(total), "token table": 0.0}
    for name, count in named.items():
        if TOKEN_TABLE.search(name):
            shares["token table"] += count / total
            continue
        tower = next(label for label, pattern in TOWERS if pattern.search(name))
        shares[tower] = shares.get(tower, 0.0) + count / total
        block = next((label for label, pattern in BLOCKS if pattern.search(name)), "embeddings, norms, heads")
        shares[block] = shares.get(block, 0.0) + count / total
    return shares


def counts(model: nn.Module, prefix: str = "") -> dict[str, int]:
    return {f"{prefix}{name}": p.numel() for name, p in model.named_parameters()}


def real_models() -> dict[str, dict[str, int]]:
    """Parameter counts of the real architectures, built on the meta device."""
    from unlearnbench.models import real_architectures as real

    with torch.device("meta"):
        clip = real.clip_vit_b32()
        unet, vae, text = real.sd15_unet(), real.sd15_vae(), real.sd15_text_encoder()
        llava = real.llava15_7b()
    return {"CLIP ViT-B-32": counts(clip),
            "Stable Diffusion v1.5": {**counts(unet, "unet."), **counts(vae, "vae."), **counts(text, "text.")},
            "LLaVA-1.5-7B": counts(llava)}


def embedded_models() -> dict[str, dict[str, int]]:
    """Parameter counts of the shipped embedded models."""
    from unlearnbench.models import tiny_clip, tiny_diffusion, tiny_llava

    clip = tiny_clip.load_or_train(tiny_clip.PRESETS["tiny"]).model
    canvas = tiny_diffusion.load_or_train(tiny_diffusion.PRESETS["tiny"]).model
    llava = tiny_llava.load_or_train(tiny_llava.PRESETS["tiny"]).model
    return {"ub-clip-tiny": counts(clip),
            "canvas-t2i": {**counts(canvas.unet, "unet."), **counts(canvas.text_encoder, "text.")},
            "tiny-llava": counts(llava)}


def table(models: dict[str, dict[str, int]]) -> str:
    shares = {name: parameter_shares(named) for name, named in models.items()}
    columns = ["token table", "image tower", "text tower", "UNet", "VAE", "projector", "language model",
               "attention", "MLP", "conv", "embeddings, norms, heads"]
    columns = [c for c in columns if any(c in s for s in shares.values())]
    lines = ["| model | parameters | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for name, s in shares.items():
        cells = [f"{100 * s[c]:.1f} %" if c in s else "" for c in columns]
        lines.append(f"| {name} | {s['parameters']:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table({**real_models(), **embedded_models()}))

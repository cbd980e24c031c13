"""unlearncanvas — style and object unlearning in text-to-image diffusion (UnlearnCanvas; SLUG Table 3).

Forget one style (or object) from a text-to-image model and measure, on generated images scored
by a style and an object classifier (all in %):
- UA: unlearning accuracy, 100 - the target's classification accuracy on images generated from
  prompts that name it (every object for a style target, every style for an object target);
- IRA: in-domain retain accuracy, the mean accuracy over the other styles (objects);
- CRA: cross-domain retain accuracy, the mean accuracy of the other domain (objects for a style
  target) on images whose prompts do not name the target;
- UA_para: UA on held-out paraphrased prompts that name the target, never seen in training, which
  tells forgetting a concept from forgetting one phrasing of it.

``config=embedded`` (default) trains a tiny pixel-space diffusion model (diffusers UNet + a
transformers CLIP text encoder) on the procedural MiniCanvas. ``config=real`` loads a diffusers
Stable Diffusion folder fine-tuned on UnlearnCanvas and the official classifiers, with the official
protocol (prompt template, seeds {188, 288, 588, 688, 888}, DDIM 100 steps, guidance 9.0).
Generated images are cached per (model weights, prompt, seed), so the base model is sampled once.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnbench.contrastive import contrastive_loss
from unlearnbench.benchmarks.base import Metric, SampleGrid, Suite, register_suite
from unlearnbench.config import check_counts, check_device
from unlearnbench.models.shipped import check_source
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.fid import to_uint8
from unlearnbench.passes import real_scale
from unlearnbench.datasets.unlearncanvas import DDIM_STEPS as REAL_STEPS
from unlearnbench.task import Goal, UnlearningTask, shuffled_epochs

log = logging.getLogger(__name__)


# SalUn-SD's saliency loss is the forget images' noise loss on the guided prediction (1 + c) eps(c) - c eps("")
# with c = 7.5 (its generate_mask.py): guidance 8.5.
SALUN_MASK_GUIDANCE = 8.5

# The schedule of ESD's partial samples (x_t stops at a random step of it) on Stable Diffusion: the
# reference's train-esd.py ddim_steps. The embedded model's partial samples follow its own sampling
# steps instead (docs/PROTOCOLS.md, unlearncanvas, ESD).
REAL_PARTIAL_SAMPLING_STEPS = 50

# Validation seeds (UnlearnCanvasConfig.val_seeds = None): at least 18 of the target's images per check.
EMBEDDED_VAL_SEEDS = (7, 17, 27, 37)
REAL_VAL_SEEDS = (7,)


@dataclass(frozen=True)
class UnlearnCanvasConfig:
    config: str = "embedded"  # "embedded" (MiniCanvas, tiny diffusion model) or "real"
    embedded: str = "tiny"  # embedded model preset (unlearnbench.models.tiny_diffusion.PRESETS)
    # "shipped": the tiny model shipped in the package; "trained": trained on this machine (bench.py train-embedded)
    embedded_weights: str = "shipped"
    target_kind: str = "style"  # unlearn a "style" or an "object"
    test_seeds: tuple[int, ...] = (188, 288, 588, 688, 888)  # sampling seeds of the test metrics (the protocol's)
    # Sampling seeds of the validation metrics (selection, stopping); None: embedded 4 seeds (the target's 6
    # objects x 4 = 24 images), real 1 (its 20 objects, and SD's 100-step images are costly).
    val_seeds: tuple[int, ...] | None = None
    # Validation prompts per non-target class (the target gets every one); None: all (embedded),
    # 2 (real: 51 x 20 prompts at DDIM 100 would cost SD half an hour per validation).
    val_prompts_per_class: int | None = None
    steps: int | None = None  # sampling steps; None: the model's own (embedded DDIM 5; real DDIM 100)
    guidance: float | None = None  # classifier-free guidance; None: the model's own (real 9.0)
    # Goal: the target's accuracy (100 - UA, %) on validation images at most this: UA >= 85, met by every
    # published UnlearnCanvas row of the compared methods (SalUn 86.26, SLUG 86.29, ESD 98.58;
    # docs/PROTOCOLS.md), so the judge is no stricter than the published operating points.
    forget_threshold: float = 15.0
    retain_tolerance: float = 10.0  # goal: IRA at most this many points below the original's
    reference_lr: float | None = None  # the iterative baselines' learning rate; None: UnlearnCanvasSuite.reference_lrs
    retain_samples: int = 512  # retain images handed to methods (other styles / objects)
    # Training images per method batch; None: 32 embedded, 4 real (UnlearnCanvas's SalUn port; 512-pixel
    # images through SD's UNet with gradients)
    batch_size: int | None = None
    # Prompts per UNet call when sampling; None: 256 embedded, 8 real (16 latents of 64 x 64 per call with
    # guidance). Images leave the device as they are decoded, 4 at a time.
    sample_batch_size: int | None = None
    device: str = "cpu"
    # real configuration
    model_path: str | None = None  # diffusers Stable Diffusion folder
    data: str | None = None  # UnlearnCanvas images: <Style>/<Object>/<n>.jpg
    images_per_pair: int | None = 4  # training images read per (style, object) for the methods' data
    style_classifier: str | None = None  # official style classifier checkpoint
    object_classifier: str | None = None  # official object classifier checkpoint
    # SLUG's objective (real): the transformers folder of the CLIP SD's text encoder comes from
    # (openai/clip-vit-large-patch14 for v1.5); its image tower and projections give the CLIP losses
    clip_model: str | None = None
    # FID (real only): the FID Inception weights, torch-fidelity's weights-inception-2015-12-05-6726825d.pth
    fid_weights: str | None = None
    fid_reference_images: int = 5  # reference images per (style, object) pair, as UnlearnCanvas's FID script

    def __post_init__(self) -> None:
        check_counts(self, ("retain_samples", "batch_size", "val_prompts_per_class", "steps", "images_per_pair",
                            "sample_batch_size", "fid_reference_images"),
                     "unlearncanvas")
        check_device(self.device, "unlearncanvas")
        check_source(self.embedded_weights)
        for name in ("test_seeds", "val_seeds"):
            if getattr(self, name) is not None and not getattr(self, name):
                raise UnlearnBenchError(f"unlearncanvas: {name} is empty; give at least one seed (e.g. --set {name}=7)")


@dataclass
class CanvasAssets:
    model: nn.Module  # unlearnbench.models.t2i.TextToImage
    styles: list[str]
    objects: list[str]
    train_images: object  # indices -> float (N, 3, H, W) in [-1, 1] (in memory, or read from files)
    train_styles: torch.Tensor
    train_objects: torch.Tensor
    classify: object  # uint8 images (N, 3, H, W) -> (style labels, object labels)
    template: str
    paraphrases: tuple[str, ...]
    steps: int
    guidance: float
    model_id: str
    non_targets: tuple[str, ...] = ()  # classes that are scored but never unlearned (UnlearnCanvas' photo class)
    # (excluded class index, by_style) -> a function from generated images (uint8) to their
    # Fréchet distance from the data set's images of every other class, reported as ``frechet_metric``
    # (embedded: FD_style, in the style classifier's features; real: FID); None where not measured.
    frechet: object | None = None
    frechet_metric: str = "FID"
    # The CLIP image tower and projections paired with the model's text encoder (image_embeds,
    # text_embeds): SLUG's objective. None where the real config was given no CLIP folder.
    clip_partner: object | None = None
    # The modules behind ``classify`` ("style", "object"), whose calls a run's pass counts include.
    judges: dict[str, nn.Module] = field(default_factory=dict)


@register_suite("unlearncanvas")
class UnlearnCanvasSuite(Suite):
    """Text-to-image style/object unlearning: UA, IRA, CRA on generated images (UnlearnCanvas)."""

    # 2: FID; 3: fresh noise per prompt, "Seed Images", library FID, FD_style named apart; 4: the embedded model's
    # distinct style names and deeper text tower, goal UA >= 85 judged on 24 target images
    version = 4
    kind = "diffusion"
    Config = UnlearnCanvasConfig
    metrics = (Metric("UA", "target prompts", True,
                      about="share of the target's generated images the classifier no longer recognises as it"),
               Metric("IRA", "other in-domain prompts", True,
                      about="share of other classes' generated images (same domain) classified correctly"),
               Metric("CRA", "cross-domain prompts", True,
                      about="share of the other domain's generated images classified correctly"),
               Metric("UA_para", "paraphrased target prompts", True, about="UA on paraphrased target prompts"),
               Metric("FID", "generated vs data-set images, target excluded (Inception, real)", False, unit=""),
               Metric("FD_style", "generated vs data-set images, target excluded (style-classifier features, "
                      "embedded)", False, unit=""))
    table_metrics = ("UA", "UA_para", "IRA", "CRA", "FID", "FD_style")
    plot_axes = ("UA", "IRA")
    validation_metrics = (Metric("target_acc", "forget-val", False,
                                 about="share of the target's generated images still recognised as it (100 - UA)"),)
    reference_lrs = {"embedded": 1e-4, "real": 1e-5}  # real: Stable Diffusion fine-tuning's rate

    def __init__(self, config: UnlearnCanvasConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.target_kind not in ("style", "object"):
            raise UnlearnBenchError(f"unlearncanvas: target_kind={cfg.target_kind!r}; expected 'style' or 'object'")
        if cfg.val_prompts_per_class is not None and cfg.val_prompts_per_class < 1:
            raise UnlearnBenchError(f"unlearncanvas: val_prompts_per_class={cfg.val_prompts_per_class}; "
                                    "expected at least 1 (or unset for every prompt)")
        # Generated images by model fingerprint, then (prompt, seed, steps, guidance): uint8 on the CPU, for
        # the two most recent models only (the base model and the one being scored).
        self._images: collections.OrderedDict[str, dict[tuple, torch.Tensor]] = collections.OrderedDict()

    @functools.cached_property
    def assets(self) -> CanvasAssets:
        assets = embedded_assets(self.config) if self.embedded else real_assets(self.config)
        # Loaders hand out frozen inference models; methods need gradients (the VAE stays frozen).
        assets.model.requires_grad_(True)
        return assets

    def sample_batch_size(self) -> int:
        return self.config.sample_batch_size or (256 if self.embedded else 8)

    def val_seeds(self) -> tuple[int, ...]:
        return self.config.val_seeds or (EMBEDDED_VAL_SEEDS if self.embedded else REAL_VAL_SEEDS)

    def resolved_settings(self) -> dict[str, Any]:
        resolved = {"steps": self.assets.steps, "guidance": self.assets.guidance,
                    "sample_batch_size": self.sample_batch_size(), "val_seeds": list(self.val_seeds())}
        return {**super().resolved_settings(),
                **{key: value for key, value in resolved.items() if getattr(self.config, key) is None}}

    def model_id(self) -> str:
        return self.assets.model_id

    def base_model(self) -> nn.Module:
        return self.assets.model

    def targets(self) -> list[str]:
        names = self.assets.styles if self.config.target_kind == "style" else self.assets.objects
        return [n for n in names if n not in self.assets.non_targets]

    # -- generation and scoring ----------------------------------------------------------------
    def generate(self, model: nn.Module, prompts: list[str], seeds: tuple[int, ...],
                 key: str | None = None) -> torch.Tensor:
        """Images for every (prompt, seed), prompt-major, as uint8 (N, 3, H, W) on the CPU, from the cache
        where the weights match. The real test grid (5,100 images of 512 pixels) is 4 GB as uint8 and four
        times that as floats, so consumers convert a chunk at a time. ``key``: the model's ``fingerprint``,
        where the caller already has it (hashing Stable Diffusion's weights takes seconds)."""
        key_model = key or fingerprint(model)
        if key_model not in self._images:
            self._images[key_model] = {}
            while len(self._images) > 2:
                self._images.popitem(last=False)
        self._images.move_to_end(key_model)
        cache, steps, guidance = self._images[key_model], self.assets.steps, self.assets.guidance
        pairs = [(p, s) for p in prompts for s in seeds]
        missing = [(p, s) for p, s in pairs if (p, s, steps, guidance) not in cache]
        if missing:
            batch = self.sample_batch_size()
            # Each embedded UNet step stands for REAL_STEPS / steps steps of the real protocol (pass counts).
            with real_scale({"unet": REAL_STEPS / steps} if self.embedded else {}):
                images = model.sample([p for p, _ in missing], [s for _, s in missing], steps=steps,
                                      guidance=guidance, batch_size=batch)
            for (p, s), image in zip(missing, to_uint8(images)):
                cache[(p, s, steps, guidance)] = image
        return torch.stack([cache[(p, s, steps, guidance)] for p, s in pairs])

    def score(self, model: nn.Module, target: str, seeds: tuple[int, ...], paraphrases: bool,
              per_class: int | None = None, target_only: bool = False) -> dict[str, float]:
        """UA, IRA, CRA (and UA_para) on images generated for ``seeds``.

        ``per_class``: prompts per non-target class (rotating through the other domain, so that
        every cross-domain class is still covered); None: the full grid. ``target_only``: UA alone,
        from the target's prompts.
        """
        a = self.assets
        by_style = self.config.target_kind == "style"
        domain, cross = (a.styles, a.objects) if by_style else (a.objects, a.styles)
        target_idx = domain.index(target)
        grid = []  # (domain class, cross class)
        others = 0  # non-target classes so far: where the next one starts in the rotation
        for c in range(len(domain)):
            if c == target_idx or per_class is None:
                picks = range(len(cross))
            else:
                n = min(per_class, len(cross))
                picks = [(others * n + k) % len(cross) for k in range(n)]
                others += 1
            if c == target_idx or not target_only:
                grid.extend((c, k) for k in picks)
        pairs = [(c, k) if by_style else (k, c) for c, k in grid]  # (style, object)
        prompts = [a.template.format(style=a.styles[s], object=a.objects[o]) for s, o in pairs]
        style_pred, object_pred = a.classify(self.generate(model, prompts, seeds))
        n = len(seeds)
        styles = torch.tensor([s for s, _ in pairs]).repeat_interleave(n)
        objects = torch.tensor([o for _, o in pairs]).repeat_interleave(n)
        if target_only:
            hits = (style_pred if by_style else object_pred) == target_idx
            metrics = {"UA": 100 * (1 - hits.float().mean().item())}
        else:
            metrics = canvas_metrics(style_pred, object_pred, styles, objects, target_idx, by_style)
        if paraphrases and a.paraphrases:
            para = [t.format(style=target, object=o) if by_style else t.format(style=o, object=target)
                    for t in a.paraphrases for o in cross]
            p_style, p_object = a.classify(self.generate(model, para, seeds))
            hits = (p_style if by_style else p_object) == target_idx
            metrics["UA_para"] = 100 * (1 - hits.float().mean().item())
        return metrics

    def evaluate(self, model: nn.Module, target: str) -> dict[str, float]:
        metrics = self.score(model, target, self.config.test_seeds, paraphrases=True)
        if self.assets.frechet is not None:
            metrics[self.assets.frechet_metric] = self.fid(model, target)
        return {m.name: metrics[m.name] for m in self.metrics if m.name in metrics}

    @torch.no_grad()
    def fid(self, model: nn.Module, target: str) -> float:
        """Fréchet distance between images generated for every prompt that does not name the
        target (test seeds) and the data set's images of the other classes (``CanvasAssets.frechet``)."""
        a = self.assets
        by_style = self.config.target_kind == "style"
        target_idx = (a.styles if by_style else a.objects).index(target)
        pairs = [(s, o) for s in range(len(a.styles)) for o in range(len(a.objects))
                 if (s if by_style else o) != target_idx]
        prompts = [a.template.format(style=a.styles[s], object=a.objects[o]) for s, o in pairs]
        generated = self.generate(model, prompts, self.config.test_seeds)
        return a.frechet(target_idx, by_style)(generated)

    def sample_grid(self, model: nn.Module, target: str) -> SampleGrid:
        """One row per style (object), one column per object (style), first test seed; the target's row marked."""
        a = self.assets
        by_style = self.config.target_kind == "style"
        rows, cols = (a.styles, a.objects) if by_style else (a.objects, a.styles)
        prompts = [a.template.format(style=r, object=c) if by_style else a.template.format(style=c, object=r)
                   for r in rows for c in cols]
        image = to_grid(self.generate(model, prompts, self.config.test_seeds[:1]), len(rows), len(cols))
        return SampleGrid(image, tuple(rows), tuple(cols), list(rows).index(target) if target in rows else None)

    def _clip_losses(self, target: str) -> dict:
        """SLUG's objective for a text-to-image model, as the reference computes it for Stable Diffusion:
        CLIP losses through the text encoder being edited and its CLIP image tower (frozen). Forget:
        1 - cos(image embedding of a forget image, text embedding of the concept's name); retain: CLIP's
        contrastive loss on retain images and their captions."""
        partner = self.assets.clip_partner

        def forget_loss(m: nn.Module, batch) -> torch.Tensor:
            images = batch[0]
            with torch.no_grad():
                image = partner.image_embeds(images.to(m.device))
            text = partner.text_embeds(m.pooled_prompts([target]))
            return (1 - image @ text.T).mean()

        def retain_loss(m: nn.Module, batch) -> torch.Tensor:
            images, prompts = batch[0], batch[1]
            with torch.no_grad():
                image = partner.image_embeds(images.to(m.device))
            text = partner.text_embeds(m.pooled_prompts(prompts))
            same = torch.tensor([[p == q for q in prompts] for p in prompts], device=image.device)
            return contrastive_loss(partner.logit_scale.exp() * image @ text.T, same)

        return {"forget_loss": forget_loss, "retain_loss": retain_loss}

    # -- what attacks need (unlearnbench/attacks/) --------------------------------------------------
    prompt_attack_metrics = ("UA",)  # what the prompt attack's search records
    attack_seed = 10_000  # the first sampling seed of attack images: far from validation's and test's

    @functools.cached_property
    def _attack_images(self) -> dict[tuple[str, int], tuple[torch.Tensor, list[str]]]:
        return {}

    def attack_metrics(self) -> tuple[Metric, ...]:
        """UA, IRA and CRA after each attack variant: the test grid without paraphrases or FID."""
        return tuple(m for m in self.metrics if m.name in ("UA", "IRA", "CRA"))

    def attack_evaluate(self, model: nn.Module, target: str) -> dict[str, float]:
        metrics = self.score(model, target, self.config.test_seeds, paraphrases=False)
        return {m.name: metrics[m.name] for m in self.attack_metrics()}

    def attack_prompts(self, target: str) -> list[str]:
        """The target's prompts: the template with each class of the other domain."""
        a = self.assets
        if self.config.target_kind == "style":
            return [a.template.format(style=target, object=o) for o in a.objects]
        return [a.template.format(style=s, object=target) for s in a.styles]

    def attack_batches(self, target: str, n: int, batch_size: int):
        """``n`` images of ``target`` drawn by the model as it is when called (attacks call it with the base
        weights, AttackContext.base_weights) for the target's prompts at seeds from ``attack_seed`` on, which
        neither validation nor test uses; captioned with their prompts (docs/PROTOCOLS.md, "Attacks")."""
        key = (target, n)
        if key not in self._attack_images:
            prompts = self.attack_prompts(target)
            pairs = [(prompts[i % len(prompts)], self.attack_seed + i // len(prompts)) for i in range(n)]
            images = self.base_model().sample([p for p, _ in pairs], [s for _, s in pairs], steps=self.assets.steps,
                                              guidance=self.assets.guidance, batch_size=self.sample_batch_size())
            self._attack_images[key] = images, [p for p, _ in pairs]
        images, captions = self._attack_images[key]
        return shuffled_epochs(n, batch_size, lambda pick: (images[pick], [captions[i] for i in pick.tolist()], pick))

    @torch.no_grad()
    def score_target_prompts(self, model: nn.Module, target: str,
                             encode: Callable[[list[str]], torch.Tensor]) -> dict[str, float]:
        """UA on the target's prompts at the test seeds, the UNet's context made by ``encode`` (a prompt
        attack's text encoding) instead of the model's own."""
        a = self.assets
        by_style = self.config.target_kind == "style"
        pairs = [(p, s) for p in self.attack_prompts(target) for s in self.config.test_seeds]
        images = model.sample([p for p, _ in pairs], [s for _, s in pairs], steps=a.steps, guidance=a.guidance,
                              batch_size=self.sample_batch_size(), encode=encode)
        style_pred, object_pred = a.classify(to_uint8(images))
        hits = (style_pred if by_style else object_pred) == (a.styles if by_style else a.objects).index(target)
        return {"UA": 100 * (1 - hits.float().mean().item())}

    def judges(self) -> dict[str, nn.Module]:
        return {f"{kind}_classifier": module for kind, module in self.assets.judges.items()}

    def quick_scores(self, model: nn.Module, target: str, n: int = 3,
                     forget_threshold: float | None = None) -> dict[str, float]:
        """The reference's per-trial budget (SLUG's eval_uncanvas.py): n images of the target's prompts
        and one image each of n other classes, at the first validation seed. Deterministic here: the
        target with the first n classes of the other domain, and n other classes spread over the list.

        With ``forget_threshold`` (the goal's bound on ``target_acc``) the trial exits early: the target's
        images are generated first, one at a time, and once more of them are recognised as the target
        than the threshold allows, the rest are skipped: ``target_acc`` and ``IRA`` are NaN (not scored),
        and ``target_hits`` of ``target_images`` say what was seen. Only a trial that can still forget
        generates the other classes' images (one batch) for IRA. ``images`` counts the images the trial
        scored. The images are generated the same way with or without a threshold, so exiting early
        changes no score of a trial that runs to the end.
        """
        a = self.assets
        by_style = self.config.target_kind == "style"
        domain, cross = (a.styles, a.objects) if by_style else (a.objects, a.styles)
        target_idx = domain.index(target)
        others = [c for c in range(len(domain)) if c != target_idx and domain[c] not in a.non_targets]
        picked = [others[round(i * (len(others) - 1) / max(n - 1, 1))] for i in range(min(n, len(others)))]
        grid = [(target_idx, k % len(cross)) for k in range(n)] + [(c, i % len(cross)) for i, c in enumerate(picked)]
        pairs = [(c, k) if by_style else (k, c) for c, k in grid]
        prompts = [a.template.format(style=a.styles[st], object=a.objects[ob]) for st, ob in pairs]
        seeds, key = self.val_seeds()[:1], fingerprint(model)

        def hits(lo: int, hi: int) -> torch.Tensor:
            style_pred, object_pred = a.classify(self.generate(model, prompts[lo:hi], seeds, key=key))
            return ((style_pred if by_style else object_pred) == torch.tensor([c for c, _ in grid[lo:hi]])).float()

        # The most target images that may be recognised with target_acc still within the threshold.
        allowed = n if forget_threshold is None else max(
            (k for k in range(n + 1) if accuracy(torch.tensor([1.0] * k + [0.0] * (n - k))) <= forget_threshold),
            default=-1)
        # One at a time, with or without a threshold: on the CPU a UNet call's floats depend slightly on its
        # batch size (t2i.sample keeps the noise, not every rounding, per image), so a trial's images, and
        # its scores, do not depend on whether it may exit early.
        target_hits = torch.zeros(0)
        while len(target_hits) < n and target_hits.sum() <= allowed:
            target_hits = torch.cat([target_hits, hits(len(target_hits), len(target_hits) + 1)])
        scores = {"target_acc": float("nan"), "IRA": float("nan"), "target_hits": int(target_hits.sum()),
                  "target_images": len(target_hits), "images": len(target_hits)}
        if target_hits.sum() > allowed:  # recognised too often to forget: IRA is not scored
            return scores
        scores["target_acc"] = accuracy(target_hits)
        if len(grid) > n:
            scores["IRA"] = accuracy(hits(n, len(grid)))
            scores["images"] = len(grid)
        return scores

    # -- the task --------------------------------------------------------------------------------
    def task(self, target: str) -> UnlearningTask:
        if target not in self.targets():
            raise UnlearnBenchError(f"unknown target {target!r} for suite 'unlearncanvas'; targets: "
                                    f"{', '.join(self.targets())}")
        a, cfg = self.assets, self.config
        model = self.base_model()
        by_style = cfg.target_kind == "style"
        target_idx = (a.styles if by_style else a.objects).index(target)
        labels = a.train_styles if by_style else a.train_objects
        captions = [a.template.format(style=a.styles[s], object=a.objects[o])
                    for s, o in zip(a.train_styles.tolist(), a.train_objects.tolist())]
        forget_idx = torch.nonzero(labels == target_idx).flatten()
        pool = torch.nonzero(labels != target_idx).flatten()
        retain_idx = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:cfg.retain_samples]]

        def batches(indices: torch.Tensor):
            def make(pick: torch.Tensor):
                rows = indices[pick]
                return a.train_images(rows), [captions[int(i)] for i in rows], rows
            return shuffled_epochs(len(indices), cfg.batch_size or (32 if self.embedded else 4), make)

        def random_label_loss(m: nn.Module, batch, generator: torch.Generator) -> torch.Tensor:
            """SalUn for diffusion: on the forget images, the noise predicted for the target's prompt
            is pulled towards the (frozen) prediction for the same object in a random other style
            (for an object target, the same style with a random other object)."""
            images, prompts, pick = batch
            other = [i for i in range(len(a.styles if by_style else a.objects)) if i != target_idx]
            swap = [other[int(j)] for j in torch.randint(len(other), (len(pick),), generator=generator)]
            relabelled = [a.template.format(style=a.styles[w], object=a.objects[int(a.train_objects[i])]) if by_style
                          else a.template.format(style=a.styles[int(a.train_styles[i])], object=a.objects[w])
                          for w, i in zip(swap, pick.tolist())]
            x0 = m.to_model_space(images)
            t = torch.randint(0, m.noise_scheduler.config.num_train_timesteps, (len(x0),),
                              generator=generator).to(x0.device)
            x_t = m.noise_scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator).to(x0), t)
            with torch.no_grad():
                target_eps = m.predict_noise(x_t, t, m.encode_prompts(relabelled))
            return torch.nn.functional.mse_loss(m.predict_noise(x_t, t, m.encode_prompts(prompts)), target_eps)

        per_class = cfg.val_prompts_per_class
        if per_class is None and not self.embedded:
            per_class = 2

        def validate(m: nn.Module, changed: set[str] | None, target_only: bool = False) -> dict[str, float]:
            metrics = self.score(m, target, self.val_seeds(), paraphrases=False, per_class=per_class,
                                 target_only=target_only)
            metrics["target_acc"] = 100 - metrics["UA"]
            return metrics

        concept = [target] + [a.template.format(style=target, object=o) if by_style
                              else a.template.format(style=s, object=target)
                              for o, s in zip(a.objects, a.styles)][:3]
        return UnlearningTask(
            kind="diffusion", suite=self.name, target=target, model=model,
            forget_batches=batches(forget_idx), retain_batches=batches(retain_idx),
            forget_loss_fn=lambda m, b: m.noise_loss(b[0], b[1]),
            retain_loss_fn=lambda m, b: m.noise_loss(b[0], b[1]),
            validate_fn=validate,
            # A step that leaves the target recognisable fails whatever it does to the rest.
            validate_forget_fn=lambda m, changed: validate(m, changed, target_only=True),
            expensive_validation=True,
            goal=Goal("target_acc", cfg.forget_threshold, "IRA", cfg.retain_tolerance),
            # The training-based methods (GA, FT, SalUn, ESD) train the UNet, as their references do.
            editable=[n for n, p in model.named_parameters() if n.startswith("unet.") and p.requires_grad],
            layer_groups=text_encoder_layer_groups(model),
            random_label_loss_fn=random_label_loss,
            reference_lr=self.reference_lr(),
            extras={"concept_prompts": concept,
                    "partial_sampling_steps": a.steps if self.embedded else REAL_PARTIAL_SAMPLING_STEPS,
                    "saliency_loss": lambda m, b: m.noise_loss(b[0], b[1], guidance=SALUN_MASK_GUIDANCE),
                    "clip_losses": self._clip_losses(target) if a.clip_partner is not None else None,
                    "quick_scores": lambda m, **kw: self.quick_scores(m, target, **kw)},
        )


def canvas_metrics(style_pred: torch.Tensor, object_pred: torch.Tensor, styles: torch.Tensor, objects: torch.Tensor,
                   target: int, by_style: bool) -> dict[str, float]:
    """UA, IRA and CRA in % from classifier predictions on images generated from (style, object) prompts.

    For a style target: UA = 100 - accuracy of the style classifier on the target style's images;
    IRA = mean over the other styles of their style accuracy; CRA = mean over objects of the object
    accuracy on images of the other styles. An object target swaps the roles.
    """
    domain_pred, domain = (style_pred, styles) if by_style else (object_pred, objects)
    cross_pred, cross = (object_pred, objects) if by_style else (style_pred, styles)
    on_target = domain == target
    correct = (domain_pred == domain).float()
    cross_correct = (cross_pred == cross).float()
    others = [c for c in domain.unique().tolist() if c != target]
    return {
        "UA": 100 * (1 - correct[on_target].mean().item()),
        "IRA": 100 * torch.stack([correct[domain == c].mean() for c in others]).mean().item(),
        "CRA": 100 * torch.stack([cross_correct[(cross == c) & ~on_target].mean()
                                  for c in cross[~on_target].unique().tolist()]).mean().item(),
    }


def accuracy(hits: torch.Tensor) -> float:
    """Per-image hits (1.0 / 0.0) as an accuracy in %."""
    return 100 * hits.float().mean().item()


def text_encoder_layer_groups(model: nn.Module) -> dict[str, str]:
    """SLUG's candidates in a text-to-image model: the text encoder's 2-D weights (attention, MLP,
    projections), not its embeddings, norms or biases — SLUG edits one text-encoder layer of SD."""
    return {name: "text" for name, p in model.named_parameters()
            if name.startswith("text_encoder.") and p.ndim == 2 and "embedding" not in name}


def fingerprint(model: nn.Module) -> str:
    """A hash of the model's weights: equal weights, equal generated images."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def to_grid(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """uint8 images (N, 3, H, W), row-major, as one (rows * H, cols * W, 3) picture."""
    x = images.permute(0, 2, 3, 1).numpy()
    h, w = x.shape[1:3]
    return x.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)


def embedded_assets(cfg: UnlearnCanvasConfig) -> CanvasAssets:
    from unlearnbench.datasets.synthetic.canvas import PARAPHRASE_TEMPLATES, TRAIN_TEMPLATE
    from unlearnbench.models.canvas_classifier import frechet_distance
    from unlearnbench.models.tiny_diffusion import load_or_train, preset

    trained = load_or_train(preset(cfg.embedded), cfg.embedded_weights)
    train, test = trained.data.splits["train"], trained.data.splits["test"]
    classifiers = trained.classifiers
    images = train.images()

    @torch.no_grad()
    def style_features(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([classifiers.style.features(chunk) for chunk in x.split(512)])

    @functools.cache
    def frechet(exclude: int, by_style: bool):
        labels = test.style_labels if by_style else test.object_labels
        reference = style_features(test.images()[labels != exclude])
        return lambda generated: frechet_distance(style_features(from_uint8(generated)), reference)
    return CanvasAssets(
        model=trained.model.to(cfg.device).eval(), styles=trained.data.styles, objects=trained.data.objects,
        train_images=lambda idx: images[idx], train_styles=train.style_labels, train_objects=train.object_labels,
        classify=lambda x: classifiers.classify(from_uint8(x)), template=TRAIN_TEMPLATE,
        paraphrases=PARAPHRASE_TEMPLATES,
        steps=cfg.steps or trained.sample_steps, guidance=cfg.guidance or trained.guidance,
        model_id=trained.model_id, frechet=frechet, frechet_metric="FD_style",
        clip_partner=trained.clip_partner.to(cfg.device),
        judges={"style": classifiers.style, "object": classifiers.object})


def real_assets(cfg: UnlearnCanvasConfig) -> CanvasAssets:
    """Stable Diffusion fine-tuned on UnlearnCanvas, its data and the official classifiers, with
    the official protocol (DDIM 100 steps, guidance 9.0, the template; seeds from ``test_seeds``)."""
    from pathlib import Path

    from unlearnbench.datasets.unlearncanvas import (DDIM_STEPS, GUIDANCE, PHOTO_STYLE, PROMPT_TEMPLATE,
                                                     load_unlearncanvas_images, style_prompt_name)
    from unlearnbench.fid import FrechetInception, check_weights
    from unlearnbench.models.canvas_clip import check_clip_folder, load_pretrained_partner
    from unlearnbench.models.sd_loader import load_stable_diffusion, load_unlearncanvas_classifier
    from unlearnbench.models.t2i import SamplerConfig, TextToImage

    for key, what in (("data", "the UnlearnCanvas image folder (<Style>/<Object>/<n>.jpg)"),
                      ("model_path", "the diffusers Stable Diffusion folder fine-tuned on UnlearnCanvas"),
                      ("style_classifier", "the official style classifier checkpoint"),
                      ("object_classifier", "the official object classifier checkpoint")):
        if getattr(cfg, key) is None:
            raise UnlearnBenchError(f"unlearncanvas config=real needs {what}: --set {key}=PATH")
    # Cheap checks first: the data and classifiers fail in seconds, the model takes minutes to load.
    data = load_unlearncanvas_images(Path(cfg.data), per_pair=cfg.images_per_pair)
    classifiers = {kind: load_unlearncanvas_classifier(Path(getattr(cfg, f"{kind}_classifier")), kind, cfg.device)
                   for kind in ("style", "object")}
    fid_data = None
    if cfg.fid_weights is not None:
        fid_data = load_unlearncanvas_images(Path(cfg.data), per_pair=cfg.fid_reference_images)
        check_weights(cfg.fid_weights)
    if cfg.clip_model is not None:
        check_clip_folder(cfg.clip_model)
    parts = load_stable_diffusion(Path(cfg.model_path), cfg.device)
    sampler = SamplerConfig(scheduler="DDIMScheduler", timestep_spacing=parts["scheduler"].config.timestep_spacing,
                            clip_sample=False, steps=DDIM_STEPS, guidance=GUIDANCE)
    model = TextToImage(parts["unet"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"], sampler,
                        vae=parts["vae"])
    files = data.by_style()

    def train_images(indices: torch.Tensor) -> torch.Tensor:
        pixels = [torch.from_numpy(np.array(files[int(i)].resize((model.image_size,) * 2))) for i in indices]
        return torch.stack(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    @torch.no_grad()
    def classify(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The classifiers normalise with mean = std = 0.5, which is exactly the model's [-1, 1] range.
        preds = {"style": [], "object": []}
        for chunk in images.split(32):
            x = F.interpolate(from_uint8(chunk.to(cfg.device)), size=(224, 224), mode="bilinear", antialias=True)
            for kind, out in preds.items():
                out.append(classifiers[kind](x).argmax(1).cpu())
        return torch.cat(preds["style"]), torch.cat(preds["object"])

    @functools.cache
    def frechet(exclude: int, by_style: bool):
        # UnlearnCanvas's FID script: 5 images of every other pair, resized to the generated size by
        # bilinear interpolation (its cv2.resize), read a batch at a time; kept for every later model.
        labels = fid_data.style_labels if by_style else fid_data.object_labels
        files = fid_data.by_style()
        size = (model.image_size, model.image_size)

        def batches():
            for chunk in torch.nonzero(labels != exclude).flatten().split(32):
                resized = [F.interpolate(torch.from_numpy(np.array(files[int(i)])).permute(2, 0, 1)[None].float(),
                                         size=size, mode="bilinear", antialias=False) for i in chunk]
                yield torch.cat(resized).round().clamp(0, 255).to(torch.uint8)

        return FrechetInception(Path(cfg.fid_weights), batches(), cfg.device)

    styles = [style_prompt_name(s) for s in data.styles]
    return CanvasAssets(
        model=model, styles=styles, objects=list(data.objects), train_images=train_images,
        train_styles=data.style_labels, train_objects=data.object_labels, classify=classify,
        template=PROMPT_TEMPLATE, paraphrases=(), steps=cfg.steps or DDIM_STEPS,
        guidance=cfg.guidance or GUIDANCE, model_id=f"sd-{Path(cfg.model_path).resolve().name}",
        non_targets=(style_prompt_name(PHOTO_STYLE),), frechet=frechet if fid_data is not None else None,
        clip_partner=None if cfg.clip_model is None else load_pretrained_partner(
            Path(cfg.clip_model), parts["text_encoder"], cfg.device),
        judges=classifiers)

"""Passes per model component, counted as a method runs: what transfers from the embedded models to real scale.

Wall time on a 2-core machine with tiny models says little about a real run: there, a UNet step or a
7B language-model pass dominates. So every unit counts, per component of the model (a CLIP tower, the
text encoder, the UNet, the VAE decoder, the classifiers that judge generated images, the LLaVA vision
tower, projector and language model), the sample passes forward and backward that ran during the
method, searches and validations included. ``bench.py costs RUN --real-scale`` multiplies them by the
time of one pass of each real component (``unlearnbench/real_scale.py``).

Counting hooks sit on each component's *units*: the component itself, or, for open_clip towers, each
block's attention and MLP layers, so that a tower resumed at block *l* (``unlearnbench/partial_forward.py``)
counts the share of a pass it ran, by parameter count. A backward pass is counted when a gradient reaches
a unit's output. A language model's calls on one new token with a cache are counted apart
(``language_model_decode``): at real scale they cost a fraction of a prompt's pass.

Where the embedded protocol runs fewer sampling steps than the real one (5 DDIM steps against the
real suite's 100), the sampler declares the ratio with ``real_scale({"unet": 20})`` and the real-scale
count ``real_forward`` is scaled by it; ``forward`` is always what ran. A text-to-image model without a
VAE (the embedded one works in pixel space) reports the decodes a latent model would run with
``count_absent``.
"""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn

COLUMNS = ("component", "phase", "forward", "backward", "real_forward", "real_backward")
# "base_validation": the untouched model's validation, which the harness needs of every method (the goal is
# judged against it) and papers leave out of a method's runtime; "precompute": what ran in the method's
# precompute phase (CostMeter.phase: SLUG's gradient passes, which with the base validation make its floor);
# "method": everything else.
PHASES = ("method", "precompute", "base_validation")

_SCALE: contextvars.ContextVar[Mapping[str, float] | None] = contextvars.ContextVar("real_scale", default=None)
_PHASE: contextvars.ContextVar[str] = contextvars.ContextVar("pass_phase", default="method")
_ACTIVE: contextvars.ContextVar[PassCounter | None] = contextvars.ContextVar("pass_counter", default=None)


@contextmanager
def real_scale(factors: Mapping[str, float]) -> Iterator[None]:
    """Within the block, a pass of component ``c`` stands for ``factors[c]`` passes of the real protocol."""
    token = _SCALE.set({**(_SCALE.get() or {}), **factors})
    try:
        yield
    finally:
        _SCALE.reset(token)


@contextmanager
def counted_as(phase: str) -> Iterator[None]:
    """Count the passes within the block under ``phase`` (one of PHASES)."""
    if phase not in PHASES:
        raise ValueError(f"unknown pass phase {phase!r}; expected one of {PHASES}")
    token = _PHASE.set(phase)
    try:
        yield
    finally:
        _PHASE.reset(token)


def count_absent(component: str, samples: int) -> None:
    """Count forward passes of a component the embedded model does not have but the real one runs."""
    counter = _ACTIVE.get()
    if counter is not None:
        counter.add(component, "forward", samples)


def model_components(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The components of the model kinds this harness knows, each as the list of modules whose calls count."""
    from unlearnbench.partial_forward import resumable

    if resumable(model):
        return {"image_encoder": _tower_units(model.visual.transformer),
                "text_encoder": _tower_units(model.transformer)}
    # models/t2i.py's TextToImage, known by its parts: it imports this module, which so imports it not back.
    if all(hasattr(model, a) for a in ("unet", "text_encoder", "vae")):
        parts = {"text_encoder": [model.text_encoder], "unet": [model.unet]}
        if model.vae is not None:
            parts["vae_decoder"] = [model.vae.decoder]
        return parts
    inner = getattr(model, "model", model)  # transformers' LlavaForConditionalGeneration wraps a LlavaModel
    if all(hasattr(inner, a) for a in ("vision_tower", "multi_modal_projector", "language_model")):
        return {"vision_tower": [inner.vision_tower], "projector": [inner.multi_modal_projector],
                "language_model": [inner.language_model]}
    return {}


def _tower_units(transformer: nn.Module) -> list[nn.Module]:
    """A tower's blocks, open_clip's plain ones split into attention and the MLP's two layers (the block
    shares a resumed trial runs)."""
    from unlearnbench.partial_forward import plain_block

    units = []
    for block in transformer.resblocks:
        split = plain_block(block) and hasattr(block.mlp, "c_fc")
        units += [block.attn, block.mlp.c_fc, block.mlp.c_proj] if split else [block]
    return units


# The argument that carries the batch, where a module is called by keywords (transformers models take
# attention masks and caches beside it).
INPUT_NAMES = ("inputs_embeds", "input_ids", "pixel_values", "hidden_states", "sample", "x")


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*(kwargs.get(n) for n in INPUT_NAMES), *args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _output_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


class PassCounter:
    """Counts sample passes per component while active (``with counter.counting(): ...``)."""

    def __init__(self, components: Mapping[str, list[nn.Module]]) -> None:
        self.components = dict(components)
        self.counts: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(COLUMNS[2:], 0.0))

    def add(self, component: str, direction: str, samples: float) -> None:
        row = self.counts[component, _PHASE.get()]
        row[direction] += samples
        row[f"real_{direction}"] += samples * (_SCALE.get() or {}).get(component, 1.0)

    @contextmanager
    def counting(self) -> Iterator[PassCounter]:
        handles = []
        for component, units in self.components.items():
            sizes = [sum(p.numel() for p in unit.parameters()) for unit in units]
            total = sum(sizes)
            for unit, size in zip(units, sizes):
                share = size / total if total else 1 / len(units)
                handles.append(unit.register_forward_hook(self._hook(component, share, unit), with_kwargs=True))
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)
            for handle in handles:
                handle.remove()

    def _hook(self, component: str, share: float, unit: nn.Module):
        batch_dim = 1 if isinstance(unit, nn.MultiheadAttention) and not unit.batch_first else 0

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            x = _first_tensor(args, kwargs)
            if x is None or x.dim() == 0:
                return
            samples = x.shape[batch_dim] * share
            name = component
            if component == "language_model" and x.dim() >= 2 and x.shape[1] == 1 and any(
                    kwargs.get(k) is not None for k in ("cache", "past_key_values")):
                name = "language_model_decode"  # one new token against a cache
            self.add(name, "forward", samples)
            out = _output_tensor(output)
            if out is not None and out.requires_grad:
                scale, phase = (_SCALE.get() or {}).get(name, 1.0), _PHASE.get()

                def on_gradient(grad: torch.Tensor) -> None:
                    row = self.counts[name, phase]
                    row["backward"] += samples
                    row["real_backward"] += samples * scale

                out.register_hook(on_gradient)
        return hook

    def table(self) -> pd.DataFrame:
        """One row per (component, phase): sample passes forward and backward, as ran and at the real protocol's
        steps."""
        rows = [{"component": c, "phase": p, **v} for (c, p), v in sorted(self.counts.items())]
        return pd.DataFrame(rows, columns=list(COLUMNS))

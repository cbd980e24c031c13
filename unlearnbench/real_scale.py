"""The time of one sample pass of each real model component, and a run's cost projected to real scale.

Each component of the real architectures (``unlearnbench/models/real_architectures.py``: ViT-B-32; Stable
Diffusion v1.5's text encoder, UNet and VAE decoder with UnlearnCanvas's ViT-L judges; LLaVA-1.5-7B's
vision tower, projector and language model) is built with random weights on the chosen device and
timed forward, and where methods backpropagate through it, forward plus backward. Times are per sample
at the real input size: 224-pixel images and 77 tokens (CLIP), 64 x 64 latents (UNet, VAE), 336-pixel
images and a 640-token sequence, 576 image tokens plus 64 (LLaVA).

The 7B language model does not fit a small machine's memory in float32, and one layer is enough to
time: it is built with one and with two decoder layers (the real class, real widths, embedding and
head), and 32 layers cost ``t1 + 31 (t2 - t1)``; a decode step (one token against a 640-token cache)
likewise. UnlearnCanvas's two judges share one architecture and are timed once.

A unit's projected runtime is the sum over components of its sample passes at the real protocol's
steps (``unlearnbench/passes.py``: ``real_forward``, ``real_backward``) times these per-sample times.
It leaves out what is not a pass of a component (data loading, optimiser steps, host-side work), so
it is a lower bound, and its counts are the embedded protocol's (its validation sets, iterations and
image counts), with sampling steps scaled to the real protocol's.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from unlearnbench.cache import atomic_write_text, cache_dir
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.models import real_architectures as real

log = logging.getLogger(__name__)

# The components each task kind's models have, under the names unlearnbench/passes.py counts them by.
KIND_COMPONENTS = {
    "clip": ("image_encoder", "text_encoder"),
    "diffusion": ("text_encoder", "unet", "vae_decoder", "style_classifier", "object_classifier"),
    "vlm": ("vision_tower", "projector", "language_model", "language_model_decode"),
}
REAL_MODELS = {"clip": "open_clip ViT-B-32", "diffusion": "Stable Diffusion v1.5 + UnlearnCanvas ViT-L/16 judges",
               "vlm": "LLaVA-1.5-7B"}


@dataclass(frozen=True)
class PassTime:
    """Seconds per sample of one component: forward, and backward (None where not timed)."""

    forward_s: float
    backward_s: float | None
    batch: int  # samples per timed call
    note: str = ""


def _now(device: torch.device) -> float:
    """The clock, after the device has finished what it was given."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _clock(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls, after one warm-up call on accelerators."""
    if device.type == "cuda":
        fn()
    times = []
    for _ in range(repeats):
        start = _now(device)
        fn()
        times.append(_now(device) - start)
    return sorted(times)[len(times) // 2]


def _forward_backward(module: nn.Module, call: Callable[[nn.Module], torch.Tensor], device: torch.device,
                      repeats: int, backward: bool) -> tuple[float, float | None]:
    """(forward s, backward s) per call: backward = (forward + backward) - forward, through every parameter."""
    module.eval()
    with torch.no_grad():
        forward = _clock(lambda: call(module), device, repeats)
    if not backward:
        return forward, None
    module.requires_grad_(True)

    def step():
        module.zero_grad(set_to_none=True)
        call(module).float().pow(2).mean().backward()
    both = _clock(step, device, repeats)
    module.zero_grad(set_to_none=True)
    return forward, max(both - forward, 0.0)


def _build(builder: Callable[[], nn.Module], device: torch.device, dtype: torch.dtype) -> nn.Module:
    with torch.device(device):
        model = builder()
    return model if dtype == torch.float32 else model.to(dtype)


def time_clip(device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, PassTime]:
    model = _build(real.clip_vit_b32, device, dtype)
    batch = 8
    images = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    tokens = torch.randint(0, model.vocab_size, (batch, 77), device=device)
    out = {}
    for name, call in (("image_encoder", lambda m: m.encode_image(images)),
                       ("text_encoder", lambda m: m.encode_text(tokens))):
        fwd, bwd = _forward_backward(model, call, device, repeats, backward=True)
        out[name] = PassTime(fwd / batch, bwd / batch, batch)
    return out


def time_diffusion(device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, PassTime]:
    out = {}
    text = _build(real.sd15_text_encoder, device, dtype)
    tokens = torch.randint(0, 49408, (1, 77), device=device)
    fwd, bwd = _forward_backward(text, lambda m: m(input_ids=tokens).last_hidden_state, device, repeats, True)
    out["text_encoder"] = PassTime(fwd, bwd, 1)
    del text
    unet = _build(real.sd15_unet, device, dtype)
    latents = torch.randn(1, 4, 64, 64, device=device, dtype=dtype)
    context = torch.randn(1, 77, 768, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)
    fwd, bwd = _forward_backward(unet, lambda m: m(latents, t, encoder_hidden_states=context).sample, device,
                                 repeats, True)
    out["unet"] = PassTime(fwd, bwd, 1)
    del unet
    vae = _build(real.sd15_vae, device, dtype)
    fwd, _ = _forward_backward(vae, lambda m: m.decode(latents).sample, device, repeats, False)
    out["vae_decoder"] = PassTime(fwd, None, 1, "decode of one 64x64x4 latent to 512 pixels")
    del vae
    judge = _build(lambda: real.unlearncanvas_classifier(51), device, dtype)
    images = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    fwd, _ = _forward_backward(judge, lambda m: m(images), device, repeats, False)
    out["style_classifier"] = PassTime(fwd, None, 1)
    out["object_classifier"] = PassTime(fwd, None, 1, "same architecture as the style classifier (timed once)")
    return out


def time_vlm(device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, PassTime]:
    from transformers import CLIPVisionModel, LlamaForCausalLM
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    config = real.llava15_7b_config()
    out = {}
    tower = _build(lambda: CLIPVisionModel(config.vision_config), device, dtype)
    pixels = torch.randn(1, 3, 336, 336, device=device, dtype=dtype)
    fwd, bwd = _forward_backward(tower, lambda m: m(pixel_values=pixels).last_hidden_state, device, repeats, True)
    out["vision_tower"] = PassTime(fwd, bwd, 1)
    del tower
    projector = _build(lambda: LlavaMultiModalProjector(config), device, dtype)
    features = torch.randn(1, real.LLAVA_IMAGE_TOKENS, config.vision_config.hidden_size, device=device, dtype=dtype)
    fwd, bwd = _forward_backward(projector, lambda m: m(features), device, repeats, True)
    out["projector"] = PassTime(fwd, bwd, 1)
    del projector
    length = real.LLAVA_IMAGE_TOKENS + real.LLAVA_PROMPT_TOKENS
    embeds = torch.randn(1, length, config.text_config.hidden_size, device=device, dtype=dtype)
    step_embeds = embeds[:, -1:]
    lm = _build(lambda: LlamaForCausalLM(real.llava15_7b_config(language_layers=1).text_config), device, dtype)
    layer = lm.model.layers[0]
    layer_s = []  # the decoder layer's own forward time in each timed call, from hooks around it
    layer.register_forward_pre_hook(lambda *_: layer_s.append(-_now(device)))
    layer.register_forward_hook(lambda *_: layer_s.__setitem__(-1, layer_s[-1] + _now(device)))
    n = config.text_config.num_hidden_layers

    def extrapolate(call, backward: bool) -> tuple[float, float | None]:
        """One layer's model timed; n layers cost the rest (embedding, norm, head) plus n times the layer."""
        layer_s.clear()
        forward, back = _forward_backward(lm, call, device, repeats, backward)
        one_layer = sorted(layer_s[:repeats])[len(layer_s[:repeats]) // 2]
        full = forward + (n - 1) * one_layer
        return full, None if back is None else back * full / forward  # backward scales with the forward

    out["language_model"] = PassTime(*extrapolate(lambda m: m(inputs_embeds=embeds).logits, True), 1,
                                     f"{n} layers from the timed one-layer model, {length} tokens; backward at "
                                     "the one-layer model's backward/forward ratio")
    with torch.no_grad():
        prefilled = lm(inputs_embeds=embeds, use_cache=True)
    cache = prefilled.get("cache", prefilled.get("past_key_values"))
    keyword = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"

    def one_token(m):
        # a copy of the prefilled cache each call, so every step sees a cache of the same length
        return m(inputs_embeds=step_embeds, use_cache=True, **{keyword: copy.deepcopy(cache)}).logits
    out["language_model_decode"] = PassTime(extrapolate(one_token, False)[0], None, 1,
                                            f"one token against a {length}-token cache, {n} layers")
    return out


TIMERS = {"clip": time_clip, "diffusion": time_diffusion, "vlm": time_vlm}


def resolve_device(device: str) -> torch.device:
    """``auto``: the first CUDA device where there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise UnlearnBenchError(f"--device {device!r}: {err}") from None


def pass_times(kind: str, device: str = "auto", dtype: str = "float32", repeats: int | None = None,
               refresh: bool = False) -> dict[str, PassTime]:
    """Per-sample pass times of ``kind``'s real components on ``device``, measured once and cached per
    (device name, dtype, torch version, threads)."""
    if kind not in TIMERS:
        raise UnlearnBenchError(f"no real-scale components for task kind {kind!r}; known: {', '.join(TIMERS)}")
    dev = resolve_device(device)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise UnlearnBenchError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16")
    repeats = repeats or (3 if dev.type == "cuda" else 1)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or 'cpu'}"
    key = f"{kind}-{dev.type}-{name}-{dtype}-torch{torch.__version__}-threads{torch.get_num_threads()}"
    file = cache_dir() / "real_scale" / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in key)}.json"
    if file.is_file() and not refresh:
        stored = json.loads(file.read_text())
        return {c: PassTime(**v) for c, v in stored["components"].items()}
    log.info("timing one pass of each real %s component on %s (%s); this takes a few minutes on a CPU",
             REAL_MODELS[kind], dev, dtype)
    try:
        times = TIMERS[kind](dev, torch_dtype, repeats)
    except torch.OutOfMemoryError as err:
        raise UnlearnBenchError(f"real-scale timing of {REAL_MODELS[kind]} ran out of memory on {dev}: {err}") from None
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, json.dumps({"key": key, "device": str(dev), "device_name": name, "dtype": dtype,
                                        "components": {c: vars(t) for c, t in times.items()}}, indent=1))
    return times


def project(passes: pd.DataFrame, times: dict[str, PassTime]) -> pd.DataFrame:
    """Seconds per component at real scale for one unit's pass table (``unlearnbench/passes.py``)."""
    rows = []
    for row in passes.itertuples():
        timed = times.get(row.component)
        if timed is None:
            raise UnlearnBenchError(f"no real-scale time for component {row.component!r}; timed: {', '.join(times)}")
        backward = 0.0
        if row.real_backward:
            if timed.backward_s is None:
                raise UnlearnBenchError(f"component {row.component!r} ran backward passes, but its real-scale "
                                        "backward is not timed")
            backward = row.real_backward * timed.backward_s
        rows.append({"component": row.component, "phase": getattr(row, "phase", "method"),
                     "real_forward": row.real_forward, "real_backward": row.real_backward,
                     "forward_s": row.real_forward * timed.forward_s, "backward_s": backward,
                     "seconds": row.real_forward * timed.forward_s + backward})
    return pd.DataFrame(rows)

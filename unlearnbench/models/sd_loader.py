"""The real ``unlearncanvas`` models: a diffusers Stable Diffusion folder and the UnlearnCanvas judges.

Everything loads from local files only. The folder's layout is checked before any weights are read, so
a missing file is reported by name instead of as a library traceback or a download attempt.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from unlearnbench.datasets.unlearncanvas import UNLEARNCANVAS_OBJECTS, UNLEARNCANVAS_STYLES
from unlearnbench.errors import UnlearnBenchError

logger = logging.getLogger(__name__)

# Weights file names in order of preference; the first present decides, a ".fp16." name is loaded as
# the fp16 variant. ".index.json" names a sharded checkpoint.
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                      "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.fp16.safetensors",
                      "diffusion_pytorch_model.fp16.bin")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                         "model.fp16.safetensors", "pytorch_model.fp16.bin")
# component -> (config file, weights file candidates)
_WEIGHTED = {
    "unet": ("config.json", _DIFFUSERS_WEIGHTS),
    "vae": ("config.json", _DIFFUSERS_WEIGHTS),
    "text_encoder": ("config.json", _TRANSFORMERS_WEIGHTS),
}
SD_LAYOUT = ("expected a diffusers Stable Diffusion folder (e.g. UnlearnCanvas' fine-tuned SD v1.5 in diffusers "
             "format): path/model_index.json; path/unet/ and path/vae/ each with config.json and "
             "diffusion_pytorch_model.safetensors (or .bin); path/text_encoder/ with config.json and "
             "model.safetensors (or pytorch_model.bin); path/tokenizer/ with vocab.json and merges.txt (or "
             "tokenizer.json); path/scheduler/scheduler_config.json")

CLASSIFIER_ARCH = "vit_large_patch16_224.augreg_in21k"
CLASSIFIER_CLASSES = {"style": UNLEARNCANVAS_STYLES, "object": UNLEARNCANVAS_OBJECTS}
CLASSIFIER_IMAGE_SIZE = 224
CLASSIFIER_STATE_KEYS = ("model_state_dict", "state_dict", "model")  # the official files use the first
CLASSIFIER_FORMAT = ("expected a torch.save file of the UnlearnCanvas classifier: a dict whose "
                     "'model_state_dict' holds the timm ViT-L/16 state dict with a 51-way (style) or 20-way "
                     "(object) head (head.weight, head.bias); a bare state dict is accepted too")


def load_stable_diffusion(path: Path, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> dict:
    """The components of a Stable Diffusion folder: ``unet``, ``text_encoder``, ``tokenizer``, ``vae``, ``scheduler``.

    Models are moved to ``device`` and ``dtype`` and left in eval mode. The scheduler is a
    ``DDIMScheduler`` built from the folder's scheduler config whatever class saved it (SD v1.5 ships a
    PNDM config), because the protocol samples with DDIM; its settings (betas, ``clip_sample``,
    ``steps_offset``, ...) come from that file unchanged.
    """
    path = Path(path)
    variants = _check_sd_folder(path)
    # Imported here because diffusers takes seconds to import and only the real suite needs it.
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    loaders = {"unet": UNet2DConditionModel, "text_encoder": CLIPTextModel, "tokenizer": CLIPTokenizer,
               "vae": AutoencoderKL, "scheduler": DDIMScheduler}
    components: dict = {}
    for name, cls in loaders.items():
        variant = {"variant": variants[name]} if variants.get(name) else {}
        try:
            component = cls.from_pretrained(path / name, local_files_only=True, **variant)
        except (OSError, ValueError) as err:
            raise UnlearnBenchError(f"cannot load the Stable Diffusion {name} from {path / name}: {err}") from None
        if isinstance(component, nn.Module):
            component = component.to(device=device, dtype=dtype).eval()
        components[name] = component
    logger.info("loaded Stable Diffusion from %s", path)
    return components


def _check_sd_folder(path: Path) -> dict[str, str | None]:
    """Raise for the first missing file; return each weighted component's variant ("fp16" or None)."""
    if not path.is_dir():
        raise UnlearnBenchError(f"Stable Diffusion folder not found: {path}; {SD_LAYOUT}")
    index = path / "model_index.json"
    if not index.is_file():
        raise UnlearnBenchError(f"Stable Diffusion file not found: {index}; {SD_LAYOUT}")
    try:
        json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnlearnBenchError(f"{index} is not valid JSON ({err}); {SD_LAYOUT}") from None

    variants: dict[str, str | None] = {}
    for name in ("unet", "text_encoder", "tokenizer", "vae", "scheduler"):
        folder = path / name
        if not folder.is_dir():
            raise UnlearnBenchError(f"Stable Diffusion folder not found: {folder}; {SD_LAYOUT}")
        if name == "scheduler":
            _require(folder / "scheduler_config.json")
        elif name == "tokenizer":
            if not (folder / "tokenizer.json").is_file():
                _require(folder / "vocab.json")
                _require(folder / "merges.txt")
        else:
            config, weights = _WEIGHTED[name]
            _require(folder / config)
            present = [w for w in weights if (folder / w).is_file()]
            if not present:
                raise UnlearnBenchError(f"Stable Diffusion weights file not found: {folder / weights[0]} "
                                        f"(nor {', '.join(weights[1:])}); {SD_LAYOUT}")
            variants[name] = "fp16" if ".fp16." in present[0] else None
    return variants


def _require(file: Path) -> None:
    if not file.is_file():
        raise UnlearnBenchError(f"Stable Diffusion file not found: {file}; {SD_LAYOUT}")


def load_unlearncanvas_classifier(path: Path, kind: Literal["style", "object"], device: str | torch.device = "cpu",
                                  arch: str = CLASSIFIER_ARCH) -> nn.Module:
    """An UnlearnCanvas style (51 classes) or object (20 classes) classifier, frozen and in eval mode.

    The official judges are timm ``vit_large_patch16_224.augreg_in21k`` with the head replaced by a
    ``Linear(1024, n_classes)``, saved as ``{"model_state_dict": model.state_dict()}``: the same keys as
    ``timm.create_model(arch, num_classes=n_classes)``, which is what is built here (without downloading
    weights). A bare state dict, a ``"state_dict"`` / ``"model"`` entry and a DataParallel ``module.``
    prefix are accepted as well. ``arch`` is another timm name for the same kind of checkpoint (the tests
    use a tiny ViT); the protocol uses the default.

    The model carries ``.preprocess`` (PIL image -> tensor: resize to 224x224, scale to [-1, 1], as in
    the official evaluation) and ``.classnames`` (the label order of its outputs).
    """
    import timm  # imported here: only the real suite needs it
    from torchvision import transforms

    if kind not in CLASSIFIER_CLASSES:
        raise UnlearnBenchError(f"unknown UnlearnCanvas classifier kind {kind!r}; valid: 'style', 'object'")
    classnames = CLASSIFIER_CLASSES[kind]
    path = Path(path)
    if not path.is_file():
        raise UnlearnBenchError(f"UnlearnCanvas {kind} classifier checkpoint not found: {path}; "
                                f"{CLASSIFIER_FORMAT}")
    state = _classifier_state_dict(path)
    head = state.get("head.weight")
    if head is None or head.ndim != 2:
        raise UnlearnBenchError(f"{path} has no 2-D 'head.weight', so it is not a timm ViT classifier "
                                f"checkpoint; {CLASSIFIER_FORMAT}")
    if head.shape[0] != len(classnames):
        raise UnlearnBenchError(f"{path} has a {head.shape[0]}-class head but the {kind} classifier needs "
                                f"{len(classnames)} classes{_head_hint(head.shape[0], kind)}")

    try:
        model = timm.create_model(arch, pretrained=False, num_classes=len(classnames))
    except RuntimeError as err:  # timm's error for an unknown model name
        raise UnlearnBenchError(f"cannot build timm model {arch!r}: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise UnlearnBenchError(f"{path} does not fit timm {arch!r} ({_key_summary(model, state)}); "
                                f"{CLASSIFIER_FORMAT}\n{err}") from None
    model.requires_grad_(False)
    model.eval().to(device)
    model.preprocess = transforms.Compose([
        transforms.Resize((CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE)),
        transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    ])
    model.classnames = list(classnames)
    logger.info("loaded UnlearnCanvas %s classifier %s (%s)", kind, path, arch)
    return model


def _classifier_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe pickles
        raise UnlearnBenchError(
            f"cannot read classifier checkpoint {path}: {err}. If it is a trusted file that holds more than "
            f"tensors, re-save only its weights: torch.save({{'model_state_dict': torch.load(p, "
            f"weights_only=False)['model_state_dict']}}, new_path); {CLASSIFIER_FORMAT}") from None
    if not isinstance(checkpoint, dict):
        raise UnlearnBenchError(f"{path} holds a {type(checkpoint).__name__}, not a dict; {CLASSIFIER_FORMAT}")
    for key in CLASSIFIER_STATE_KEYS:
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise UnlearnBenchError(f"{path} holds no tensors under {', '.join(map(repr, CLASSIFIER_STATE_KEYS))} "
                                f"or at its top level (keys: {sorted(checkpoint)[:8]}); {CLASSIFIER_FORMAT}")
    if all(k.startswith("module.") for k in state):  # saved from a DataParallel / DDP wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _head_hint(n_classes: int, kind: str) -> str:
    other = "object" if kind == "style" else "style"
    if n_classes == len(CLASSIFIER_CLASSES[other]):
        return f": this looks like the {other} classifier"
    if n_classes == 61:
        return ": this looks like a classifier of the 60-style release; the benchmark uses the 50-style one"
    return ""


def _key_summary(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = [f"{len(missing)} missing keys, e.g. {missing[:3]}" if missing else "",
             f"{len(unexpected)} unexpected keys, e.g. {unexpected[:3]}" if unexpected else "",
             f"{len(wrong)} keys with other shapes, e.g. {wrong[:3]}" if wrong else ""]
    return "; ".join(p for p in parts if p) or "incompatible tensors"

"""Loading LLaVA and the CLIP it sees with, from local folders (nothing is downloaded).

The ``llava`` suite needs two models: a transformers ``LlavaForConditionalGeneration`` folder with
its processor (e.g. a local copy of ``llava-hf/llava-1.5-7b-hf``), and the ``CLIPModel`` whose vision
tower LLaVA embeds (for llava-1.5, ``openai/clip-vit-large-patch14-336``), because SLUG's forget loss
compares the tower's image embedding with the identity name's embedding from that CLIP's text tower.
The embedded models are saved in the same layout and loaded through these functions.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _folder(path: str | Path | None, what: str, setting: str, needs: tuple[str, ...]) -> Path:
    if path is None:
        raise UnlearnBenchError(f"llava config=real needs {what}: --set {setting}=FOLDER (a local folder; "
                                "nothing is downloaded)")
    folder = Path(path)
    if not folder.is_dir():
        raise UnlearnBenchError(f"{setting}={folder}: no such folder (expected {what})")
    missing = [name for name in needs if not (folder / name).is_file()]
    if missing:
        raise UnlearnBenchError(f"{setting}={folder} is not {what}: missing {', '.join(missing)}")
    return folder


def load_llava(path: str | Path | None, device: str = "cpu", dtype: str = "float32"):
    """(model, processor) from a transformers LLaVA folder, in eval mode, with the generation
    settings greedy decoding needs (pad/eos/bos on ``generation_config``)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = _folder(path, "a transformers LLaVA folder", "model_path", ("config.json",))
    if dtype not in DTYPES:
        raise UnlearnBenchError(f"dtype={dtype!r}; expected one of {', '.join(DTYPES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        processor = AutoProcessor.from_pretrained(folder)
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=DTYPES[dtype])
    except (OSError, ValueError) as err:
        raise UnlearnBenchError(f"could not load LLaVA from {folder}: {err}") from None
    tokenizer = processor.tokenizer
    gen = model.generation_config
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen.eos_token_id, gen.bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
    return model.eval().to(device), processor


def load_clip(path: str | Path | None, device: str = "cpu"):
    """(CLIPModel, tokenizer) from a transformers CLIP folder, frozen, in eval mode."""
    from transformers import AutoTokenizer, CLIPModel

    folder = _folder(path, "a transformers CLIP folder", "clip_path", ("config.json",))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        clip = CLIPModel.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise UnlearnBenchError(f"could not load CLIP from {folder}: {err}") from None
    clip.requires_grad_(False)
    return clip.eval().to(device), tokenizer


def vision_tower_prefix(model: nn.Module) -> str:
    """The parameter-name prefix of LLaVA's vision tower (``model.vision_tower.`` in transformers 5)."""
    tower = model.model.vision_tower
    for name, module in model.named_modules():
        if module is tower:
            return name + "."
    raise UnlearnBenchError("this LLaVA model has no vision tower module")


def used_vision_layers(model: nn.Module) -> int:
    """How many encoder layers of the vision tower LLaVA's features pass through.

    LLaVA reads the hidden state ``vision_feature_layer`` (llava-1.5: -2, the penultimate layer), so
    the layers after it never reach the language model: editing them cannot change an answer.
    """
    layer = model.config.vision_feature_layer
    if not isinstance(layer, int):
        raise UnlearnBenchError(f"vision_feature_layer={layer!r}: only a single feature layer is supported")
    total = model.config.vision_config.num_hidden_layers
    return layer if layer >= 0 else total + 1 + layer  # hidden_states[0] is the embedding output


def vision_parameters(model: nn.Module) -> dict[str, str]:
    """Name -> role of every vision-tower parameter that can change LLaVA's answers.

    Roles: "layer" for 2-D weights of the attention and MLP layers LLaVA reads (SLUG's candidates),
    "other" for the rest of what LLaVA reads (embeddings, norms, biases). The post-layernorm and
    the layers past ``vision_feature_layer`` are left out: LLaVA never sees their output.
    """
    prefix = vision_tower_prefix(model)
    used = used_vision_layers(model)
    out = {}
    for name, param in model.named_parameters():
        if not name.startswith(prefix):
            continue
        local = name[len(prefix):]
        match = re.search(r"encoder\.layers\.(\d+)\.", local)
        if match and int(match.group(1)) >= used:
            continue
        if "post_layernorm" in local:
            continue
        out[name] = "layer" if match and param.ndim == 2 else "other"
    return out

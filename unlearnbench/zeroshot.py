"""CLIP zero-shot classification: templates, text classifiers, image features, top-k accuracy.

The classifier for a class is the normalised mean of its normalised text embeddings over the
templates (open_clip's recipe). Objects use open_clip's own ImageNet templates; identities use
portrait templates in the style of SLUG's celebrity prompts, or under the real suite's slug protocol
SLUG's single evaluation template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
from torch import nn

IDENTITY_TEMPLATES: tuple[Callable[[str], str], ...] = (
    lambda c: f"a photo of {c}.",
    lambda c: f"a portrait of {c}.",
    lambda c: f"a close-up photo of {c}.",
    lambda c: f"a picture of {c}.",
)
SLUG_IDENTITY_TEMPLATES: tuple[Callable[[str], str], ...] = (lambda c: f"{c}.",)  # SLUG's CELEB_TEMPLATES
OBJECT_TEMPLATES: tuple[Callable[[str], str], ...] = tuple(SIMPLE_IMAGENET_TEMPLATES)


def captions(classnames: Sequence[str], templates: Sequence[Callable[[str], str]]) -> list[str]:
    """All captions, class-major: caption ``c * len(templates) + t`` is template t of class c."""
    return [template(name) for name in classnames for template in templates]


def caption_tokens(tokenizer: Callable, classnames: Sequence[str], templates: Sequence[Callable[[str], str]],
                   batch_size: int = 256) -> list[torch.Tensor]:
    """The token batches of every caption (``captions`` order) that ``text_classifier`` encodes."""
    texts = captions(classnames, templates)
    return [tokenizer(texts[start:start + batch_size]) for start in range(0, len(texts), batch_size)]


def class_weights(caption_features: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, dim) normalised means of the normalised caption features, class-major."""
    return F.normalize(caption_features.view(n_classes, -1, caption_features.shape[-1]).mean(dim=1), dim=-1)


@torch.no_grad()
def text_classifier(model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                    templates: Sequence[Callable[[str], str]], device: torch.device,
                    batch_size: int = 256) -> torch.Tensor:
    """(n_classes, dim) normalised zero-shot weights."""
    chunks = [F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1)
              for tokens in caption_tokens(tokenizer, classnames, templates, batch_size)]
    return class_weights(torch.cat(chunks), len(classnames))


@torch.no_grad()
def image_features(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """(n_images, dim) normalised image embeddings."""
    chunks = [F.normalize(model.encode_image(images.to(device)).float(), dim=-1) for images in batches]
    return torch.cat(chunks)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean per sample: is the true label among the top-k logits?"""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None].to(logits.device)).any(dim=1).cpu()

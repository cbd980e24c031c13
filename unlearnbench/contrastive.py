"""CLIP's contrastive loss with shared positives, the one form every model and suite here uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over ``logits`` (images x texts) where every pair marked in ``same`` is a positive:
    pairs of one class when few classes fill big batches, or pairs whose captions are identical. With only
    the diagonal marked it is CLIP's loss."""
    target = same.float() / same.float().sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

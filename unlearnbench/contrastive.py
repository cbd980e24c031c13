"""CLIP's contrastive loss with shared positives, the one form every model and suite here uses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOGIT_SCALE_MAX = math.log(100)  # CLIP clamps its temperature at 100 (Radford et al. 2021, Sec. 2.5)


def contrastive_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over ``logits`` (images x texts) where every pair marked in ``same`` is a positive:
    pairs of one class when few classes fill big batches, or pairs whose captions are identical. With only
    the diagonal marked it is CLIP's loss."""
    target = same.float() / same.float().sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def training_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, logit_scale: torch.Tensor) -> None:
    """One optimiser and schedule step of a CLIP-style training loop, the temperature clamped as CLIP's is."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        logit_scale.clamp_(0, LOGIT_SCALE_MAX)

"""The learning-rate multipliers every optimiser here uses, written once.

``lr_multiplier(step, total, warmup, shape)`` scales a base learning rate: a linear warm-up over
``warmup`` steps times a cosine decay from 1 to 0 over ``total`` steps (``shape="cosine"``), or 1
throughout (``"constant"``). With ``warmup=0`` the cosine is open_clip's ``cosine_lr`` (the schedule
of SLUG's ``unlearn_compare.py``, run there with ``--warmup 0``). Steps past ``total`` stay at 0.
"""

from __future__ import annotations

import math

SHAPES = ("cosine", "constant")


def lr_multiplier(step: int, total: int, warmup: int = 0, shape: str = "cosine") -> float:
    """The factor applied to the base learning rate at 0-based ``step`` of ``total`` planned ones."""
    if shape not in SHAPES:
        raise ValueError(f"schedule shape {shape!r}; expected one of {', '.join(SHAPES)}")
    ramp = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if shape == "constant":
        return ramp
    return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

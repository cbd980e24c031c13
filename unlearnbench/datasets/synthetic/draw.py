"""Tiny vector drawing on numpy canvases: shapes are boolean masks over normalised coordinates,
rendered at 2x and averaged down so edges are anti-aliased."""

from __future__ import annotations

import numpy as np

SUPERSAMPLE = 2


class Canvas:
    """An RGB float canvas whose coordinates run from -1 to 1 on both axes (y down)."""

    def __init__(self, size: int, background: np.ndarray) -> None:
        self.size = size
        n = size * SUPERSAMPLE
        axis = (np.arange(n) + 0.5) / n * 2 - 1
        self.y, self.x = np.meshgrid(axis, axis, indexing="ij")
        self.rgb = np.broadcast_to(np.asarray(background, dtype=np.float32), (n, n, 3)).copy()

    def fill(self, mask: np.ndarray, colour: np.ndarray) -> None:
        self.rgb[mask] = colour

    def to_uint8(self, rng: np.random.Generator, noise: float) -> np.ndarray:
        n = self.size
        small = self.rgb.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE, 3).mean(axis=(1, 3))
        small = small + rng.normal(0, noise, small.shape)
        return np.clip(small, 0, 255).astype(np.uint8)


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def rect(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def jitter_colour(rng: np.random.Generator, colour: tuple[int, int, int], amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, dtype=np.float32) + rng.normal(0, amount, 3), 0, 255)

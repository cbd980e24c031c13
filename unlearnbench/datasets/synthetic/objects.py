"""Procedural object classes: the ImageNet analog of the embedded ``clip`` suite.

Each class is a shape with a pattern and a base colour; images vary position, rotation, scale,
colour, a textured background and noise. Shape and colour both carry the class, as texture and
colour do in ImageNet, so a small model can learn it in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearnbench.datasets.synthetic.draw import Canvas, jitter_colour


@dataclass(frozen=True)
class ObjectClass:
    name: str
    shape: str
    pattern: str  # "solid" | "stripes" | "dots" | "checks" | "outline"
    colour: tuple[int, int, int]


OBJECT_CLASSES = [
    ObjectClass("sunflower", "star", "solid", (250, 200, 20)),
    ObjectClass("tomato", "circle", "solid", (220, 40, 30)),
    ObjectClass("lime", "circle", "solid", (120, 210, 40)),
    ObjectClass("dice", "square", "dots", (240, 240, 240)),
    ObjectClass("chessboard", "square", "checks", (30, 30, 30)),
    ObjectClass("traffic cone", "triangle", "stripes", (250, 120, 20)),
    ObjectClass("pyramid", "triangle", "solid", (210, 180, 120)),
    ObjectClass("life ring", "ring", "stripes", (240, 60, 60)),
    ObjectClass("donut", "ring", "solid", (200, 140, 80)),
    ObjectClass("kite", "diamond", "solid", (60, 100, 230)),
    ObjectClass("playing card", "diamond", "outline", (200, 20, 40)),
    ObjectClass("first aid kit", "cross", "solid", (230, 30, 30)),
    ObjectClass("clover", "cross", "solid", (30, 150, 60)),
    ObjectClass("crescent moon", "crescent", "solid", (240, 240, 170)),
    ObjectClass("banana", "crescent", "solid", (250, 225, 50)),
    ObjectClass("beach ball", "circle", "stripes", (40, 120, 240)),
    ObjectClass("honeycomb", "hexagon", "dots", (230, 170, 30)),
    ObjectClass("stop sign", "hexagon", "solid", (200, 20, 20)),
    ObjectClass("starfish", "star", "dots", (240, 110, 90)),
    ObjectClass("zebra rug", "square", "stripes", (250, 250, 250)),
]

# Object classes of the retain pool (the LAION analogue): a shape, pattern and colour combination
# that no scored class has, named by what it looks like. Models train on them; no metric scores them.
POOL_OBJECT_CLASSES = [
    ObjectClass("violet dotted ring", "ring", "dots", (150, 60, 200)),
    ObjectClass("teal checked diamond", "diamond", "checks", (30, 160, 160)),
    ObjectClass("pink striped hexagon", "hexagon", "stripes", (240, 120, 180)),
    ObjectClass("brown outlined star", "star", "outline", (130, 80, 40)),
    ObjectClass("navy solid crescent", "crescent", "solid", (20, 40, 120)),
    ObjectClass("olive dotted cross", "cross", "dots", (110, 120, 30)),
    ObjectClass("grey checked triangle", "triangle", "checks", (140, 140, 140)),
    ObjectClass("gold outlined square", "square", "outline", (220, 170, 40)),
    ObjectClass("cyan striped star", "star", "stripes", (60, 210, 230)),
    ObjectClass("maroon dotted circle", "circle", "dots", (120, 20, 40)),
    ObjectClass("lilac outlined hexagon", "hexagon", "outline", (190, 160, 220)),
    ObjectClass("mint checked ring", "ring", "checks", (150, 230, 180)),
]


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    if shape == "circle":
        return r < 0.55
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) < 0.45
    if shape == "triangle":
        return (y < 0.45) & (y > -0.55 + 1.7 * np.abs(x))
    if shape == "ring":
        return (r < 0.6) & (r > 0.33)
    if shape == "diamond":
        return np.abs(x) / 0.45 + np.abs(y) / 0.65 < 1
    if shape == "cross":
        return ((np.abs(x) < 0.17) & (np.abs(y) < 0.6)) | ((np.abs(y) < 0.17) & (np.abs(x) < 0.6))
    if shape == "crescent":
        return (r < 0.55) & (np.hypot(x - 0.25, y + 0.1) > 0.45)
    if shape == "hexagon":
        sector = np.pi / 3
        return r * np.cos((theta % sector) - sector / 2) < 0.5
    if shape == "star":
        return r < 0.33 + 0.25 * np.cos(5 * theta)
    raise ValueError(f"unknown shape {shape!r}")


def _pattern_mask(cls: ObjectClass, x: np.ndarray, y: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Where the secondary colour goes inside the shape."""
    if cls.pattern == "stripes":
        return shape & (np.sin(x * 14) > 0)
    if cls.pattern == "dots":
        return shape & (np.sin(x * 16) * np.sin(y * 16) > 0.55)
    if cls.pattern == "checks":
        return shape & ((np.floor(x * 4.5) + np.floor(y * 4.5)) % 2 == 0)
    if cls.pattern == "outline":
        return shape & ~_shape_mask(cls.shape, x / 0.7, y / 0.7)
    return np.zeros_like(shape)


def draw_object(cls: ObjectClass, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One jittered image of an object class as uint8 (size, size, 3)."""
    background = rng.uniform(60, 200, 3)
    canvas = Canvas(size, background)
    # Background texture: low-contrast waves so the model cannot rely on a flat background.
    freq = rng.uniform(3, 9)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(canvas.x * freq + phase)[..., None] * rng.uniform(5, 25)
    canvas.rgb += wave.astype(np.float32)

    angle = rng.uniform(-0.5, 0.5)
    scale = rng.uniform(0.8, 1.15)
    dx, dy = rng.uniform(-0.2, 0.2, 2)
    xs, ys = (canvas.x - dx) / scale, (canvas.y - dy) / scale
    x = xs * np.cos(angle) + ys * np.sin(angle)
    y = -xs * np.sin(angle) + ys * np.cos(angle)
    shape = _shape_mask(cls.shape, x, y)
    main = jitter_colour(rng, cls.colour, 14)
    secondary = np.array([20, 20, 20] if np.mean(cls.colour) > 120 else [240, 240, 240], dtype=np.float32)
    canvas.fill(shape, main)
    canvas.fill(_pattern_mask(cls, x, y, shape), secondary)
    return canvas.to_uint8(rng, noise=8.0)

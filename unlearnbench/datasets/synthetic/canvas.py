"""MiniCanvas: the procedural UnlearnCanvas analog of the embedded ``unlearncanvas`` suite.

Every image is one object (a silhouette: cat, tree, house, ...) painted in one style. A style's look
is a palette (background and ink colours) plus a technique (the stroke and texture pattern); its name
is one of UnlearnCanvas's style names, unrelated to the look, as real style names are ("Monet" does
not say "blue watercolour"). So, as in UnlearnCanvas, difficulty comes from styles that look alike
(two techniques share every palette, several palettes every technique), not from names that share
words: of the twelve names only "Warm Love" and "Warm Smear" share a word, as in UnlearnCanvas, where
9 of 51 names share any word. (Before suite version 4 the names were the looks themselves, "warm coral
watercolor" / "warm coral mosaic", so every name shared two of its three words with another: a test of
entangled names rather than a miniature of the benchmark; docs/RESULTS.md.)

Training captions use the UnlearnCanvas template; the paraphrase templates are never trained on
and exist to ask whether a style was forgotten or only its training caption.
Images vary position, scale, mirror, colours, texture phase and noise; everything is
deterministic from the config's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from unlearnbench.datasets.synthetic.draw import Canvas, ellipse, jitter_colour, rect
from unlearnbench.errors import UnlearnBenchError

SPLITS = ("train", "val", "test")

TRAIN_TEMPLATE = "A {object} image in {style} style."
# Held out: never used to train the diffusion model, only to evaluate it. Their connecting words
# ("artwork", "painted", ...) are in the tokenizer's vocabulary but untrained.
PARAPHRASE_TEMPLATES = (
    "{style} artwork showing a {object}.",
    "a {object}, painted as {style}.",
    "a picture of a {object} done in {style}.",
)


def prompt(style: str, object: str, template: str = TRAIN_TEMPLATE) -> str:
    """The caption of ``object`` in ``style``, e.g. "A cat image in Monet style."."""
    return template.format(style=style, object=object)


@dataclass(frozen=True)
class Palette:
    background: tuple[int, int, int]
    ink: tuple[int, int, int]


# Light and dark backgrounds alternate within "warm" and "cold" so the temperature word alone does
# not fix the background.
PALETTES = {
    "warm coral": Palette(background=(250, 228, 205), ink=(232, 90, 78)),
    "warm amber": Palette(background=(88, 48, 24), ink=(246, 178, 40)),
    "cold teal": Palette(background=(212, 240, 234), ink=(18, 128, 136)),
    "cold indigo": Palette(background=(26, 26, 72), ink=(156, 146, 246)),
}
TECHNIQUES = ("watercolor", "mosaic", "sketch")


@dataclass(frozen=True)
class Style:
    palette: str  # a key of PALETTES
    technique: str  # one of TECHNIQUES
    name: str  # how prompts name it: an UnlearnCanvas style name, underscores as spaces


# The 4 x 3 grid of looks, each under its own name. The order fixes each style's images (its index seeds
# them) and what a smaller configuration takes (the first n).
STYLES = (
    Style("warm coral", "watercolor", "Impressionism"), Style("warm coral", "mosaic", "Byzantine"),
    Style("warm amber", "watercolor", "Monet"), Style("warm amber", "sketch", "Rust"),
    Style("cold teal", "watercolor", "Fauvism"), Style("cold teal", "mosaic", "Cubism"),
    Style("cold indigo", "sketch", "Dadaism"), Style("cold indigo", "mosaic", "Picasso"),
    Style("warm coral", "sketch", "Warm Love"), Style("warm amber", "mosaic", "Warm Smear"),
    Style("cold teal", "sketch", "Cartoon"), Style("cold indigo", "watercolor", "Abstractionism"),
)
# Silhouettes chosen to stay distinguishable at 16 px; names start with a consonant so "a {object}"
# reads right in every template.
OBJECTS = ("cat", "tree", "house", "fish", "star", "cup", "boat", "heart")


@dataclass(frozen=True)
class CanvasDataConfig:
    n_styles: int = 12  # the first n of STYLES
    n_objects: int = 6  # the first n of OBJECTS
    image_size: int = 16
    images_per_pair: tuple[int, int, int] = (48, 6, 12)  # per (style, object): train, val, test
    seed: int = 0


@dataclass
class CanvasSplit:
    """Images of one split with their (style, object) labels, indices into CanvasData's lists."""

    pixels: np.ndarray  # uint8 (N, H, W, 3)
    style_labels: torch.Tensor  # int64 (N,)
    object_labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.pixels)

    def images(self) -> torch.Tensor:
        """The pixels as float (N, 3, H, W) in [-1, 1], the range of the models."""
        return to_model_range(self.pixels)


@dataclass
class CanvasData:
    styles: list[str]
    objects: list[str]
    splits: dict[str, CanvasSplit]  # "train" | "val" | "test"

    def captions(self, split: str, template: str = TRAIN_TEMPLATE) -> list[str]:
        """One caption per image of ``split``."""
        s = self.splits[split]
        return [prompt(self.styles[i], self.objects[j], template)
                for i, j in zip(s.style_labels.tolist(), s.object_labels.tolist())]


def to_model_range(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def make_canvas_data(cfg: CanvasDataConfig) -> CanvasData:
    """All splits of the data set for ``cfg``; the same config always gives the same pixels."""
    if not 2 <= cfg.n_styles <= len(STYLES):
        raise UnlearnBenchError(f"n_styles={cfg.n_styles}; choose 2 to {len(STYLES)}")
    if not 2 <= cfg.n_objects <= len(OBJECTS):
        raise UnlearnBenchError(f"n_objects={cfg.n_objects}; choose 2 to {len(OBJECTS)}")
    if cfg.image_size < 8 or cfg.image_size % 2:
        raise UnlearnBenchError(f"image_size={cfg.image_size}; use an even size of at least 8")
    styles, objects = STYLES[: cfg.n_styles], OBJECTS[: cfg.n_objects]
    splits = {}
    for split_idx, (split, count) in enumerate(zip(SPLITS, cfg.images_per_pair)):
        pixels, style_labels, object_labels = [], [], []
        for s, style in enumerate(styles):
            for o, obj in enumerate(objects):
                # One stream per (pair, split): more styles or objects never change existing images.
                rng = np.random.default_rng([cfg.seed, STYLES.index(style), OBJECTS.index(obj), split_idx])
                pixels += [draw_canvas(style, obj, rng, cfg.image_size) for _ in range(count)]
                style_labels += [s] * count
                object_labels += [o] * count
        size = cfg.image_size
        splits[split] = CanvasSplit(
            pixels=np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8),
            style_labels=torch.tensor(style_labels, dtype=torch.int64),
            object_labels=torch.tensor(object_labels, dtype=torch.int64))
    return CanvasData(styles=[s.name for s in styles], objects=list(objects), splits=splits)


def object_mask(obj: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where ``obj`` covers the canvas; coordinates run from -1 to 1, y down, object centred."""
    if obj == "cat":  # a round head with two pointed ears
        ears = [(y < -0.15) & (y > -0.75 + 2.2 * np.abs(x - side * 0.3)) for side in (-1, 1)]
        return ellipse(x, y, 0, 0.12, 0.5, 0.45) | ears[0] | ears[1]
    if obj == "tree":  # a pine canopy on a thin trunk
        canopy = (y < 0.35) & (y > -0.8 + 1.9 * np.abs(x))
        return canopy | rect(x, y, -0.12, 0.3, 0.12, 0.8)
    if obj == "house":  # a square body under a wide roof, with a door cut out
        body = rect(x, y, -0.45, 0.0, 0.45, 0.7) & ~rect(x, y, -0.12, 0.3, 0.12, 0.7)
        roof = (y <= 0.02) & (y > -0.7 + 1.15 * np.abs(x))
        return body | roof
    if obj == "fish":  # an oval body, a forked tail and an eye hole
        body = ellipse(x, y, -0.15, 0, 0.55, 0.33) & ~ellipse(x, y, -0.45, -0.05, 0.09, 0.09)
        tail = (x > 0.3) & (x < 0.8) & (np.abs(y) < (x - 0.3) * 1.1)
        return body | tail
    if obj == "star":  # five points, one up
        r, theta = np.hypot(x, y), np.arctan2(y, x) + np.pi / 2
        return r < 0.42 + 0.33 * np.cos(5 * theta)
    if obj == "cup":  # a tall body with a handle on the right
        handle = ellipse(x, y, 0.3, 0.05, 0.35, 0.3) & ~ellipse(x, y, 0.3, 0.05, 0.17, 0.14) & (x > 0.2)
        return rect(x, y, -0.5, -0.4, 0.25, 0.6) | handle
    if obj == "boat":  # a hull with a triangular sail
        hull = (y > 0.25) & (y < 0.55) & (np.abs(x) < 0.75 - (y - 0.25))
        sail = (x > -0.05) & (y < 0.18) & (y > -0.75 + 1.4 * x) & (x < 0.55)
        return hull | sail | rect(x, y, -0.1, -0.75, -0.02, 0.25)
    if obj == "heart":
        u, v = x / 0.7, -(y - 0.05) / 0.7
        return (u ** 2 + v ** 2 - 1) ** 3 - u ** 2 * v ** 3 < 0
    raise ValueError(f"unknown object {obj!r}")


def draw_canvas(style: Style, obj: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """One jittered image of ``obj`` in ``style`` as uint8 (size, size, 3)."""
    palette = PALETTES[style.palette]
    background = jitter_colour(rng, palette.background, 8)
    ink = jitter_colour(rng, palette.ink, 10)
    canvas = Canvas(size, background)
    pixel = 2.0 / size  # one output pixel in canvas units

    scale = rng.uniform(0.8, 1.0)
    dx, dy = rng.uniform(-0.12, 0.12, 2)
    mirror = rng.choice([-1.0, 1.0])
    x, y = mirror * (canvas.x - dx) / scale, (canvas.y - dy) / scale
    mask = object_mask(obj, x, y)

    if style.technique == "watercolor":
        # Paper with soft blotches; the object is a wash: blurred edges, uneven pigment.
        canvas.rgb += _blotches(rng, canvas.rgb.shape[:2], amount=22)
        wash = gaussian_filter(mask.astype(np.float32), sigma=1.2)[..., None]
        pigment = 0.75 + 0.25 * _smooth_field(rng, canvas.rgb.shape[:2], sigma=4)[..., None]
        canvas.rgb = canvas.rgb * (1 - wash * pigment) + ink * (wash * pigment)
        return canvas.to_uint8(rng, noise=2.0)

    if style.technique == "sketch":
        # Paper hatched one way, the object hatched the other way inside a solid outline.
        period, phase = 4 * pixel, rng.uniform(0, 4 * pixel)
        paper_lines = ((canvas.x + canvas.y + phase) % period) < 1.1 * pixel
        canvas.rgb[paper_lines] = 0.8 * canvas.rgb[paper_lines] + 0.2 * ink
        inside = mask & (((canvas.x - canvas.y + phase) % period) < 2.0 * pixel)
        outline = mask & ~object_mask(obj, x / 0.82, y / 0.82)
        canvas.fill(inside | outline, ink)
        return canvas.to_uint8(rng, noise=3.0)

    # Mosaic: flat colours broken into 2x2-pixel tiles, each tile its own shade.
    canvas.fill(mask, ink)
    image = canvas.to_uint8(rng, noise=0.0).astype(np.float32)
    tiles = size // 2
    shade = rng.uniform(0.78, 1.18, (tiles, tiles, 1)).repeat(2, axis=0).repeat(2, axis=1)
    image *= shade
    image[1::2, 1::2] *= 0.55  # grout: one dark corner per tile, all a 16 px image has room for
    image += rng.normal(0, 3.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Low-frequency noise scaled to [-1, 1]."""
    field = gaussian_filter(rng.normal(0, 1, shape), sigma=sigma, mode="wrap")
    return field / (np.abs(field).max() + 1e-8)


def _blotches(rng: np.random.Generator, shape: tuple[int, int], amount: float) -> np.ndarray:
    return (amount * _smooth_field(rng, shape, sigma=3))[..., None].astype(np.float32)

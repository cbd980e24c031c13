"""The embedded ``clip`` suite's data: procedural identities (CelebA analog) and objects
(ImageNet analog), each split into train / forget-validation / test, deterministic from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearnbench.datasets.base import ArrayImageSet
from unlearnbench.datasets.synthetic.faces import draw_face, make_identities
from unlearnbench.datasets.synthetic.objects import OBJECT_CLASSES, draw_object

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticClipDataConfig:
    n_identities: int = 60
    n_objects: int = 20  # at most len(OBJECT_CLASSES)
    image_size: int = 32
    identity_images: tuple[int, int, int] = (80, 10, 20)  # per identity: train, val, test
    object_images: tuple[int, int, int] = (100, 20, 40)  # per object class: train, val, test
    seed: int = 0


@dataclass
class SyntheticClipData:
    identities: dict[str, ArrayImageSet]  # split -> images labelled by identity name
    objects: dict[str, ArrayImageSet]  # split -> images labelled by object class name


def make_clip_data(cfg: SyntheticClipDataConfig) -> SyntheticClipData:
    if cfg.n_objects > len(OBJECT_CLASSES):
        raise ValueError(f"n_objects={cfg.n_objects} but only {len(OBJECT_CLASSES)} object classes exist")
    people = make_identities(cfg.n_identities, cfg.seed)
    classes = OBJECT_CLASSES[: cfg.n_objects]

    return SyntheticClipData(
        identities=render_splits(people, draw_face, cfg.identity_images, 0, cfg.seed, cfg.image_size),
        objects=render_splits(classes, draw_object, cfg.object_images, 1, cfg.seed, cfg.image_size))


def render_splits(items: list, draw, counts: tuple[int, int, int], domain: int, seed: int, image_size: int,
                  names: list[str] | None = None) -> dict[str, ArrayImageSet]:
    """``counts`` images per item for each split, drawn by ``draw(item, rng, image_size)`` and
    labelled by item index (class names: ``names``, else each item's ``name``).

    One random stream per (seed, domain, class, split): adding classes never changes old images,
    and generators with different ``domain`` numbers never share a stream.
    """
    names = names if names is not None else [item.name for item in items]
    out = {}
    for split_idx, (split, count) in enumerate(zip(SPLITS, counts)):
        pixels, labels = [], []
        for label, item in enumerate(items):
            rng = np.random.default_rng([seed, domain, label, split_idx])
            pixels += [draw(item, rng, image_size) for _ in range(count)]
            labels += [label] * count
        out[split] = ArrayImageSet(np.stack(pixels), labels, names)
    return out

"""The embedded ``clip`` suite's data: procedural identities (CelebA analog) and objects
(ImageNet analog), each split into train / forget-validation / test, and a retain pool (LAION
analog): image-caption pairs of other identities and object classes that the model trains on but
no metric scores, so no method fine-tunes on the classes it is graded on. Deterministic from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearnbench.datasets.base import ArrayImageSet
from unlearnbench.datasets.synthetic.faces import draw_face, make_identities, make_pool_identities
from unlearnbench.datasets.synthetic.objects import OBJECT_CLASSES, POOL_OBJECT_CLASSES, draw_object
from unlearnbench.zeroshot import IDENTITY_TEMPLATES, OBJECT_TEMPLATES

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticClipDataConfig:
    n_identities: int = 60
    n_objects: int = 20  # at most len(OBJECT_CLASSES)
    image_size: int = 32
    identity_images: tuple[int, int, int] = (80, 10, 20)  # per identity: train, val, test
    object_images: tuple[int, int, int] = (100, 20, 40)  # per object class: train, val, test
    pool_identities: int = 30  # retain pool: identities never scored
    pool_objects: int = 12  # retain pool: object classes never scored (at most len(POOL_OBJECT_CLASSES))
    pool_images: int = 40  # retain pool: images per pool class
    seed: int = 0


@dataclass
class SyntheticClipData:
    identities: dict[str, ArrayImageSet]  # split -> images labelled by identity name
    objects: dict[str, ArrayImageSet]  # split -> images labelled by object class name
    pool: ArrayImageSet  # retain pool images labelled by pool class (identities first, then objects)
    pool_captions: list[str]  # one caption per pool image (its class name in the class's templates, in turn)


def make_clip_data(cfg: SyntheticClipDataConfig) -> SyntheticClipData:
    if cfg.n_objects > len(OBJECT_CLASSES):
        raise ValueError(f"n_objects={cfg.n_objects} but only {len(OBJECT_CLASSES)} object classes exist")
    if cfg.pool_objects > len(POOL_OBJECT_CLASSES):
        raise ValueError(f"pool_objects={cfg.pool_objects} but only {len(POOL_OBJECT_CLASSES)} pool classes exist")
    people = make_identities(cfg.n_identities, cfg.seed)
    classes = OBJECT_CLASSES[: cfg.n_objects]
    pool_people = make_pool_identities(cfg.pool_identities, cfg.seed, people)
    pool_classes = POOL_OBJECT_CLASSES[: cfg.pool_objects]
    pool_faces = render_splits(pool_people, draw_face, (cfg.pool_images,), 2, cfg.seed, cfg.image_size)["train"]
    pool_things = render_splits(pool_classes, draw_object, (cfg.pool_images,), 3, cfg.seed, cfg.image_size)["train"]
    pool = pool_faces.concat(pool_things)
    return SyntheticClipData(
        identities=render_splits(people, draw_face, cfg.identity_images, 0, cfg.seed, cfg.image_size),
        objects=render_splits(classes, draw_object, cfg.object_images, 1, cfg.seed, cfg.image_size),
        pool=pool, pool_captions=pool_captions(pool, n_identity_classes=len(pool_people)))


def pool_captions(pool: ArrayImageSet, n_identity_classes: int) -> list[str]:
    """A caption per pool image: the k-th image of a class takes its class's k-th template (cycling),
    the captions the model trained on."""
    texts, seen = [], {}
    for label in pool.labels.tolist():
        k = seen[label] = seen.get(label, -1) + 1
        templates = IDENTITY_TEMPLATES if label < n_identity_classes else OBJECT_TEMPLATES
        texts.append(templates[k % len(templates)](pool.classnames[label]))
    return texts


def render_splits(items: list, draw, counts: tuple[int, ...], domain: int, seed: int, image_size: int,
                  names: list[str] | None = None) -> dict[str, ArrayImageSet]:
    """``counts`` images per item for each split (the first ``len(counts)`` of train, val, test),
    drawn by ``draw(item, rng, image_size)`` and labelled by item index (class names: ``names``,
    else each item's ``name``).

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

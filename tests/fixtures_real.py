"""Tiny on-disk copies of the real ``clip`` data sets' layouts (ImageNet val in class folders, CelebA plus
our two name files), for tests of the real loaders and anything built on them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

N_IMAGENET_CLASSES = 1000
DISTRACTOR_IDENTITY = 9999  # in the CelebA files but not in the retain list, so it must never be loaded
DISTRACTOR_IMAGES = 2


def tiny_jpeg(colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """An 8x8 JPEG: encoded once and written many times, which keeps 1000 class folders fast to build."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_imagenet_tree(root: Path, images_per_class: int = 2) -> None:
    """``root/val/<wnid>/*.JPEG`` with 1000 made-up wnids ``n00000000`` ... ``n00000999``."""
    data = tiny_jpeg()
    for class_index in range(N_IMAGENET_CLASSES):
        class_dir = root / "val" / f"n{class_index:08d}"
        class_dir.mkdir(parents=True)
        for j in range(images_per_class):
            number = class_index * images_per_class + j + 1
            (class_dir / f"ILSVRC2012_val_{number:08d}.JPEG").write_bytes(data)


def make_celeba_tree(root: Path, n_identities: int = 4, images_per_identity: int = 6) -> list[str]:
    """A CelebA tree whose retained identities' names are returned in retain-list order.

    The retain list is in reverse id order (labels must follow the list, not the ids), names contain commas
    (the CSV must be parsed as CSV), images of different identities are interleaved as in the official
    file, and one extra identity is present but not retained.
    """
    identities = [10 * (k + 1) + 3 for k in range(n_identities)]
    names = {identity: f"Person {identity}, Jr." for identity in identities}
    names[DISTRACTOR_IDENTITY] = "Not Retained"
    owners = [identity for _ in range(images_per_identity) for identity in identities]
    owners += [DISTRACTOR_IDENTITY] * DISTRACTOR_IMAGES

    image_dir = root / "img_align_celeba"
    image_dir.mkdir(parents=True)
    data = tiny_jpeg((40, 40, 200))
    lines = []
    for index, identity in enumerate(owners, start=1):
        filename = f"{index:06d}.jpg"
        (image_dir / filename).write_bytes(data)
        lines.append(f"{filename} {identity}\n")
    (root / "identity_CelebA.txt").write_text("".join(lines))

    with (root / "identity_names.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["identity", "name"])
        writer.writerows(names.items())

    retained = identities[::-1]
    (root / "retain_identities.txt").write_text(
        "# identities used by the benchmark\n\n" + "".join(f"{identity}\n" for identity in retained))
    return [names[identity] for identity in retained]

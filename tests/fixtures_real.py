"""Tiny on-disk copies of the real ``clip`` data sets' layouts (ImageNet val in class folders, CelebA plus
our two name files or SLUG's two, image-text pairs as a webdataset shard or a folder), for tests of the real
loaders and anything built on them."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import open_clip
from PIL import Image

N_IMAGENET_CLASSES = 1000
N_IMAGENET_VAL = 50_000
DISTRACTOR_IDENTITY = 9999  # in the CelebA files but not in the retain list, so it must never be loaded
DISTRACTOR_IMAGES = 2

# The real configuration's stand-in model: ub-clip-micro's shape with CLIP's BPE vocabulary, so that the
# real path's open_clip tokenizer fits it (the embedded models read a word-level vocabulary instead).
open_clip.add_model_config(Path(__file__).parent / "configs")


def tiny_jpeg(colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """An 8x8 JPEG: encoded once and written many times, which keeps 1000 class folders fast to build."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def valprep_file_list(images_per_class: int = 50, seed: int = 0) -> list[str]:
    """``"<wnid>/ILSVRC2012_val_<number>.JPEG"`` names as valprep.sh lays them out: the val images are
    numbered 1..N in an order unrelated to their classes, and each is moved into its class folder. The wnids
    are made up (``n00000000`` ...) and each class gets ``images_per_class`` numbers at random."""
    n = N_IMAGENET_CLASSES * images_per_class
    owner = np.random.default_rng(seed).permutation(n) // images_per_class
    return [f"n{owner[i]:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)]


def make_imagenet_tree(root: Path, images_per_class: int = 2, valprep: bool = False) -> None:
    """``root/val/<wnid>/*.JPEG`` with 1000 made-up wnids ``n00000000`` ... ``n00000999``; file numbers are
    class-major, or with ``valprep`` interleaved across classes as in the real val set."""
    palette = [tiny_jpeg((16 * i, 255 - 16 * i, 60 * (i % 5))) for i in range(16)]  # images tell apart
    for class_index in range(N_IMAGENET_CLASSES):
        (root / "val" / f"n{class_index:08d}").mkdir(parents=True)
    if valprep:
        files = valprep_file_list(images_per_class)
    else:
        files = [f"n{c:08d}/ILSVRC2012_val_{c * images_per_class + j + 1:08d}.JPEG"
                 for c in range(N_IMAGENET_CLASSES) for j in range(images_per_class)]
    for i, file in enumerate(files):
        (root / "val" / file).write_bytes(palette[i % len(palette)])


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


# SLUG's CelebA files. "Ann-Marie_Ross" sorts before "Ann_Lee" as written ("-" < "_") but after "Ann Lee" once
# "_" is read as a space, so the class order tells whether names are sorted as the reference sorts them.
SLUG_FREQUENT = ["Ann_Lee", "Elon_Musk", "Ann-Marie_Ross", "Bo_Chen"]
SLUG_NOT_FREQUENT = ["Jeff_Bezos"]  # a paper target outside the frequent list: a target, not a TA_CA identity
SLUG_WITHOUT_IMAGES = ["Zed_Unused", "Yan_Unseen"]  # listed, images absent: classes only
SLUG_IMAGES_PER_NAME = 3


def make_slug_celeba_tree(root: Path) -> dict[str, list[str]]:
    """``img_align_celeba/``, ``list_identity_celeba.txt`` (a count line, a header line, then
    ``<file> <First_Last>`` per image, owners interleaved) and ``frequent_celebs.txt`` (names with "_", no
    final newline, as SLUG ships it). Returns every listed name (as written) -> its image files in order."""
    with_images = SLUG_FREQUENT + SLUG_NOT_FREQUENT
    owners = [name for _ in range(SLUG_IMAGES_PER_NAME) for name in with_images] + SLUG_WITHOUT_IMAGES
    image_dir = root / "img_align_celeba"
    image_dir.mkdir(parents=True)
    files: dict[str, list[str]] = {}
    lines = [f"{len(owners)}\n", "image_id identity_name\n"]
    for index, name in enumerate(owners, start=1):
        filename = f"{index:06d}.jpg"
        if name not in SLUG_WITHOUT_IMAGES:
            (image_dir / filename).write_bytes(tiny_jpeg((20 * index % 256, 200, 255 - 9 * index % 256)))
        files.setdefault(name, []).append(filename)
        lines.append(f"{filename} {name}\n")
    (root / "list_identity_celeba.txt").write_text("".join(lines))
    (root / "frequent_celebs.txt").write_text("\n".join(SLUG_FREQUENT))
    return files


def pair_caption(i: int) -> str:
    return f"a photo number {i}, from the web"


def make_pairs_shard(path: Path, n_pairs: int = 6) -> None:
    """A webdataset shard as img2dataset writes LAION's: ``NNNNNNNNN.jpg``, ``.txt`` and ``.json`` members per
    key, plus one image without a caption and one caption without an image (both skipped)."""
    members: list[tuple[str, bytes]] = []
    for i in range(n_pairs):
        key = f"{i:09d}"
        members += [(f"{key}.jpg", tiny_jpeg((10 * i, 100, 100))), (f"{key}.txt", pair_caption(i).encode()),
                    (f"{key}.json", json.dumps({"key": key}).encode())]
    members += [(f"{n_pairs:09d}.jpg", tiny_jpeg()), (f"{n_pairs + 1:09d}.txt", b"no image")]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_pairs_folder(folder: Path, n_pairs: int = 6) -> None:
    """``x.jpg`` + ``x.txt`` files in one folder, plus an image without a caption (skipped)."""
    folder.mkdir(parents=True)
    for i in range(n_pairs):
        (folder / f"pair{i:03d}.jpg").write_bytes(tiny_jpeg((10 * i, 100, 100)))
        (folder / f"pair{i:03d}.txt").write_text(pair_caption(i) + "\n")
    (folder / "lonely.jpg").write_bytes(tiny_jpeg())

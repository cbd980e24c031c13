"""ImageNet (ILSVRC2012 validation set in class folders) for the real ``clip`` suite.

Two protocols read the same folder. ``heldout``: disjoint per-class train / val / test subsets, deterministic
from the seed. ``slug``: SLUG's TA_IN subset, 2,500 images drawn from the whole val set (``slug_subset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.errors import UnlearnBenchError

N_CLASSES = 1000
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
LAYOUT = ("expected root/val/<wnid>/*.JPEG: the ILSVRC2012 validation set sorted into its 1000 class "
          "folders (e.g. n01440764/), as produced by the usual valprep.sh")
DEAL_ORDER = ("test", "val", "train")  # test first, so it stays the same whatever the other fractions
# SLUG lists the val folder with torchvision's ImageFolder, which keeps these suffixes (any case).
IMAGEFOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SLUG_RATIO = 0.05  # of the whole val set: int(50,000 * 0.05) = 2,500 images
SLUG_SEED = 0


def load_imagenet_splits(root: Path, test_fraction: float = 0.05, val_fraction: float = 0.01,
                         train_fraction: float = 0.02, seed: int = 0) -> dict[str, FileImageSet]:
    """Disjoint "train" / "val" / "test" subsets of ImageNet val, labelled with open_clip's class names.

    Per class the files are sorted by name, shuffled with ``default_rng([seed, class_index])`` and dealt
    out test first, then val, then train, each taking ``max(1, round(fraction * n))`` while files remain.
    """
    # Imported here because open_clip takes seconds to import and only the real suite needs it.
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    fractions = {"test": test_fraction, "val": val_fraction, "train": train_fraction}
    for name, fraction in fractions.items():
        if not 0 <= fraction <= 1:
            raise UnlearnBenchError(f"ImageNet {name}_fraction must lie in [0, 1]; got {fraction}")
    class_dirs = _class_dirs(Path(root))

    paths: dict[str, list[Path]] = {split: [] for split in DEAL_ORDER}
    labels: dict[str, list[int]] = {split: [] for split in DEAL_ORDER}
    for class_index, class_dir in enumerate(class_dirs):
        files = sorted((p for p in class_dir.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
        if not files:
            raise UnlearnBenchError(f"ImageNet class folder {class_dir} holds no images "
                                    f"(.JPEG/.jpg/.png); {LAYOUT}")
        order = np.random.default_rng([seed, class_index]).permutation(len(files))
        start = 0
        for split in DEAL_ORDER:
            take = min(max(1, round(fractions[split] * len(files))), len(files) - start)
            paths[split] += [files[i] for i in order[start:start + take]]
            labels[split] += [class_index] * take
            start += take
    classnames = list(IMAGENET_CLASSNAMES)
    return {split: FileImageSet(paths[split], labels[split], classnames)
            for split in ("train", "val", "test")}


def _class_dirs(root: Path) -> list[Path]:
    """The 1000 class folders, sorted by wnid: the order open_clip's class names follow."""
    if not root.is_dir():
        raise UnlearnBenchError(f"ImageNet root folder not found: {root}; {LAYOUT}")
    val = root / "val"
    if not val.is_dir():
        # A common slip is passing the val folder itself as the root.
        looks_like_val = (root / "n01440764").is_dir()
        hint = f" ({root} looks like the val folder itself: pass its parent)" if looks_like_val else ""
        raise UnlearnBenchError(f"ImageNet folder not found: {val}{hint}; {LAYOUT}")
    class_dirs = sorted((p for p in val.iterdir() if p.is_dir()), key=lambda p: p.name)
    if len(class_dirs) != N_CLASSES:
        raise UnlearnBenchError(f"{val} holds {len(class_dirs)} class folders but ImageNet needs exactly "
                                f"{N_CLASSES}; {LAYOUT}")
    return class_dirs


def slug_subset(files: Sequence[str]) -> list[str]:
    """SLUG's TA_IN subset of a val file list (``"<wnid>/<file name>"`` strings, any order), in list order.

    The reference lists the folder as torchvision's ImageFolder does (class folders sorted, then file names
    sorted within each), and draws ``np.random.RandomState(0).choice(list(range(n)), size=int(n * 0.05),
    replace=False)`` indices into that list. With valprep.sh's layout the list is class-major, so the draw
    differs from one over file names alone.
    """
    ordered = sorted(files, key=lambda f: PurePosixPath(f).parts)
    n = len(ordered)
    picks = np.random.RandomState(SLUG_SEED).choice(list(range(n)), size=int(n * SLUG_RATIO), replace=False)
    return [ordered[i] for i in sorted(picks)]


def load_imagenet_slug(root: Path) -> FileImageSet:
    """SLUG's TA_IN images of ``root/val``, labelled with open_clip's class names (wnid order)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    class_dirs = _class_dirs(Path(root))
    files = []
    for class_dir in class_dirs:
        names = [p.name for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGEFOLDER_SUFFIXES]
        if not names:
            raise UnlearnBenchError(f"ImageNet class folder {class_dir} holds no images; {LAYOUT}")
        files += [f"{class_dir.name}/{name}" for name in names]
    label = {class_dir.name: i for i, class_dir in enumerate(class_dirs)}
    chosen = slug_subset(files)
    val = Path(root) / "val"
    return FileImageSet([val / f for f in chosen], [label[PurePosixPath(f).parts[0]] for f in chosen],
                        list(IMAGENET_CLASSNAMES))

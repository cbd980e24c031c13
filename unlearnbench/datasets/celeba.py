"""CelebA identities for the real ``clip`` suite, as each protocol reads them.

``heldout``: the celebrities named by a retain list, split per identity (``load_celeba_identities``).
``slug``: SLUG's own name files, every CelebA name a zero-shot class (``load_celeba_slug``).
Images are only checked for existence here; FileImageSet opens them when indexed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.errors import UnlearnBenchError

IMAGE_DIR = "img_align_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
NAMES_FILE = "identity_names.csv"
RETAIN_FILE = "retain_identities.txt"
MIN_IMAGES = 3  # one each for train, val and test
LAYOUT = (f"expected root/{IMAGE_DIR}/000001.jpg ... (the aligned and cropped CelebA images), "
          f"root/{IDENTITY_FILE} (the official file, one '000001.jpg 2880' line per image), "
          f"root/{NAMES_FILE} (CSV with header 'identity,name') and root/{RETAIN_FILE} "
          f"(one identity id per line; blank lines and # comments ignored)")
SLUG_NAMES_FILE = "list_identity_celeba.txt"
FREQUENT_FILE = "frequent_celebs.txt"
TA_CA_IDENTITIES = 100  # the reference averages TA_CA over frequent_celebs[:100]
SLUG_LAYOUT = (f"expected root/{IMAGE_DIR}/000001.jpg ... (the aligned and cropped CelebA images), "
               f"root/{SLUG_NAMES_FILE} (SLUG's data/celeba file: a count line, a header line, then one "
               f"'<image file> <First_Last>' line per image) and root/{FREQUENT_FILE} (SLUG's data/celeba file: "
               "100 names, one per line, '_' for spaces)")


def load_celeba_identities(root: Path, val_fraction: float = 0.2, test_fraction: float = 0.3,
                           seed: int = 0) -> dict[str, FileImageSet]:
    """Disjoint "train" / "val" / "test" images of the identities in ``retain_identities.txt``.

    Label i is the i-th identity of the retain list and ``classnames[i]`` its name. Per identity the
    images are sorted by filename, shuffled with ``default_rng([seed, identity_id])`` and split into
    ``max(1, round(test_fraction * n))`` test, ``max(1, round(val_fraction * n))`` val and the rest train.
    """
    root = Path(root)
    if not root.is_dir():
        raise UnlearnBenchError(f"CelebA root folder not found: {root}; {LAYOUT}")
    for required in (IMAGE_DIR, IDENTITY_FILE, NAMES_FILE, RETAIN_FILE):
        is_folder = required == IMAGE_DIR
        if not ((root / required).is_dir() if is_folder else (root / required).is_file()):
            raise UnlearnBenchError(f"CelebA {'folder' if is_folder else 'file'} not found: "
                                    f"{root / required}; {LAYOUT}")
    for name, fraction in {"val": val_fraction, "test": test_fraction}.items():
        if not 0 <= fraction <= 1:
            raise UnlearnBenchError(f"CelebA {name}_fraction must lie in [0, 1]; got {fraction}")

    retain = _read_retain_list(root / RETAIN_FILE)
    names = _read_names(root / NAMES_FILE)
    images = _read_identity_file(root / IDENTITY_FILE)
    classnames = _retained_names(retain, names, root / NAMES_FILE)

    splits = ("train", "val", "test")
    paths: dict[str, list[Path]] = {split: [] for split in splits}
    labels: dict[str, list[int]] = {split: [] for split in splits}
    for label, identity in enumerate(retain):
        who = f"identity {identity} ({classnames[label]})"
        files = sorted(images.get(identity, []))
        if len(files) < MIN_IMAGES:
            raise UnlearnBenchError(f"{who} from {root / RETAIN_FILE} has {len(files)} images in "
                                    f"{root / IDENTITY_FILE}; each listed identity needs at least "
                                    f"{MIN_IMAGES} (train, val, test): choose another identity")
        missing = [file for file in files if not (root / IMAGE_DIR / file).is_file()]
        if missing:
            raise UnlearnBenchError(f"image {root / IMAGE_DIR / missing[0]} of {who} is listed in "
                                    f"{root / IDENTITY_FILE} but absent ({len(missing)} of its {len(files)} "
                                    f"images are absent); {LAYOUT}")
        n = len(files)
        n_test = max(1, round(test_fraction * n))
        n_val = max(1, round(val_fraction * n))
        if n - n_test - n_val < 1:
            raise UnlearnBenchError(f"{who} has {n} images: test_fraction={test_fraction} and "
                                    f"val_fraction={val_fraction} leave none for train; lower them")
        order = np.random.default_rng([seed, identity]).permutation(n)
        chosen = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                  "train": order[n_test + n_val:]}
        for split in splits:
            paths[split] += [root / IMAGE_DIR / files[i] for i in chosen[split]]
            labels[split] += [label] * len(chosen[split])
    return {split: FileImageSet(paths[split], labels[split], classnames) for split in splits}


def _read_retain_list(path: Path) -> list[int]:
    identities: list[int] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdecimal():
            raise UnlearnBenchError(f"{path} line {line_no}: expected one integer identity id, got {line!r}")
        if int(text) in identities:
            raise UnlearnBenchError(f"{path} line {line_no}: identity {text} is listed twice")
        identities.append(int(text))
    if not identities:
        raise UnlearnBenchError(f"{path} lists no identities; {LAYOUT}")
    return identities


def _read_names(path: Path) -> dict[int, str]:
    # utf-8-sig: spreadsheet programs often save CSV files with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"identity", "name"} <= set(reader.fieldnames):
            raise UnlearnBenchError(f"{path} must start with the header 'identity,name'; "
                                    f"got {reader.fieldnames}")
        names: dict[int, str] = {}
        for row in reader:
            identity = (row["identity"] or "").strip()
            if not identity.isdecimal():
                raise UnlearnBenchError(f"{path} line {reader.line_num}: identity must be an integer id, "
                                        f"got {identity!r}")
            names[int(identity)] = (row["name"] or "").strip()
    return names


def _read_identity_file(path: Path) -> dict[int, list[str]]:
    images: dict[int, list[str]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdecimal():
            raise UnlearnBenchError(f"{path} line {line_no}: expected '<image file> <identity id>' "
                                    f"(e.g. '000001.jpg 2880'), got {line!r}")
        images.setdefault(int(fields[1]), []).append(fields[0])
    return images


def _retained_names(retain: list[int], names: dict[int, str], names_path: Path) -> list[str]:
    """The retain list's names in its order; they are zero-shot class names, so each must be unique."""
    classnames: list[str] = []
    for identity in retain:
        name = names.get(identity, "")
        if not name:
            raise UnlearnBenchError(f"identity {identity} from the retain list has no name in {names_path}: "
                                    f"add a line '{identity},<name>'")
        if name in classnames:
            other = retain[classnames.index(name)]
            raise UnlearnBenchError(f"identities {other} and {identity} share the name {name!r} in "
                                    f"{names_path}; zero-shot class names must be unique")
        classnames.append(name)
    return classnames


@dataclass(frozen=True)
class SlugCeleba:
    """CelebA as SLUG's CLIP protocol reads it."""

    names: list[str]  # every name in list_identity_celeba.txt, in the reference's order, "_" read as a space
    images: dict[str, list[Path]]  # name -> its images, in the file's order
    frequent: list[str]  # the TA_CA identities: the first 100 names of frequent_celebs.txt

    def identity_images(self, names: Sequence[str]) -> FileImageSet:
        """All images of ``names``, labelled by their index in ``self.names``; a missing file is an error."""
        paths, labels = [], []
        label = {name: i for i, name in enumerate(self.names)}
        for name in dict.fromkeys(names):
            missing = [p for p in self.images[name] if not p.is_file()]
            if missing:
                raise UnlearnBenchError(f"image {missing[0]} of {name} is listed in {SLUG_NAMES_FILE} but absent "
                                        f"({len(missing)} of its {len(self.images[name])} images); {SLUG_LAYOUT}")
            paths += self.images[name]
            labels += [label[name]] * len(self.images[name])
        return FileImageSet(paths, labels, self.names)


def load_celeba_slug(root: Path) -> SlugCeleba:
    """SLUG's name set and TA_CA identities from its two files, read as its evaluation code reads them.

    ``list_identity_celeba.txt``: lines after the first two are ``<image file> <name>``; the zero-shot classes
    are the distinct names sorted (as written, with underscores), then "_" replaced by a space.
    ``frequent_celebs.txt``: the TA_CA identities are its first 100 names.
    """
    root = Path(root)
    if not root.is_dir():
        raise UnlearnBenchError(f"CelebA root folder not found: {root}; {SLUG_LAYOUT}")
    for required in (IMAGE_DIR, SLUG_NAMES_FILE, FREQUENT_FILE):
        is_folder = required == IMAGE_DIR
        if not ((root / required).is_dir() if is_folder else (root / required).is_file()):
            raise UnlearnBenchError(f"CelebA {'folder' if is_folder else 'file'} not found: "
                                    f"{root / required}; {SLUG_LAYOUT}")
    by_name: dict[str, list[Path]] = {}
    path = root / SLUG_NAMES_FILE
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines()[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise UnlearnBenchError(f"{path} line {line_no}: expected '<image file> <First_Last>' "
                                    f"(e.g. '000001.jpg Jane_Doe'), got {line!r}")
        by_name.setdefault(fields[1], []).append(root / IMAGE_DIR / fields[0])
    if not by_name:
        raise UnlearnBenchError(f"{path} lists no images after its two header lines; {SLUG_LAYOUT}")
    names = [name.replace("_", " ") for name in sorted(by_name)]
    images = {name.replace("_", " "): files for name, files in by_name.items()}
    frequent = _read_frequent(root / FREQUENT_FILE, images)
    celeba = SlugCeleba(names, images, frequent)
    celeba.identity_images(frequent)  # every TA_CA image must be there: fail now, not mid-run
    return celeba


def _read_frequent(path: Path, images: dict[str, list[Path]]) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    names = []
    for line_no, line in enumerate(lines[:TA_CA_IDENTITIES], start=1):
        name = line.replace("_", " ")
        if name not in images:
            raise UnlearnBenchError(f"{path} line {line_no}: {line!r} is not a name in {SLUG_NAMES_FILE}; "
                                    f"{SLUG_LAYOUT}")
        names.append(name)
    if not names:
        raise UnlearnBenchError(f"{path} lists no names; {SLUG_LAYOUT}")
    return names

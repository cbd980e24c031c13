"""Real data of the ``llava`` suite: identity image folders and a file of utility questions.

Layout under the data root:
- ``identities/<Name>/*.jpg|jpeg|png``: one folder per identity, named by the name the model
  should answer (underscores read as spaces: ``Tom_Hanks`` is "Tom Hanks");
- ``vqa.jsonl``: one JSON object per line, ``{"image": "<path relative to the root>",
  "question": "...", "answer": "...", "type": "<question type>"}``: the utility questions.
Splits are deterministic from the seed: per identity (and per question type) the items are sorted,
shuffled with ``default_rng([seed, index])`` and dealt out test first, then val, then train.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.datasets.synthetic.vqa import Questions
from unlearnbench.errors import UnlearnBenchError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IDENTITY_LAYOUT = "expected ROOT/identities/<Name>/*.jpg, one folder per identity named by its name"
VQA_LAYOUT = ('expected ROOT/vqa.jsonl with one {"image": PATH, "question": Q, "answer": A, "type": T} '
              "object per line, PATH relative to ROOT")


def deal(n: int, fractions: dict[str, float], rng: np.random.Generator) -> dict[str, list[int]]:
    """Indices 0..n-1 shuffled and dealt to the splits in the order of ``fractions``, each taking
    ``max(1, round(fraction * n))`` while items remain; the last split takes the rest."""
    order = rng.permutation(n).tolist()
    out, start = {}, 0
    splits = list(fractions)
    for split in splits[:-1]:
        take = min(max(1, round(fractions[split] * n)), n - start)
        out[split] = order[start:start + take]
        start += take
    out[splits[-1]] = order[start:]
    return out


def load_identity_folders(root: Path, test_fraction: float = 0.2, val_fraction: float = 0.1,
                          seed: int = 0) -> dict[str, FileImageSet]:
    """"train" / "val" / "test" images of every identity folder, labelled by name (folders sorted)."""
    folder = Path(root) / "identities"
    if not folder.is_dir():
        raise UnlearnBenchError(f"identity folder not found: {folder}; {IDENTITY_LAYOUT}")
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(people) < 2:
        raise UnlearnBenchError(f"{folder} holds {len(people)} identity folders; the suite needs at least two "
                                f"(a target and others to retain); {IDENTITY_LAYOUT}")
    paths: dict[str, list[Path]] = {"test": [], "val": [], "train": []}
    labels: dict[str, list[int]] = {"test": [], "val": [], "train": []}
    for label, person in enumerate(people):
        files = sorted(p for p in person.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < 3:
            raise UnlearnBenchError(f"{person} holds {len(files)} images; each identity needs at least 3 "
                                    "(one each for train, validation and test)")
        dealt = deal(len(files), {"test": test_fraction, "val": val_fraction, "train": 1.0},
                     np.random.default_rng([seed, label]))
        for split, idx in dealt.items():
            paths[split] += [files[i] for i in idx]
            labels[split] += [label] * len(idx)
    names = [p.name.replace("_", " ") for p in people]
    return {split: FileImageSet(paths[split], labels[split], names) for split in ("train", "val", "test")}


def load_vqa_file(root: Path, val_fraction: float = 0.3, seed: int = 0) -> dict[str, Questions]:
    """"val" / "test" utility questions from ``ROOT/vqa.jsonl`` (the val share per question type)."""
    path = Path(root) / "vqa.jsonl"
    if not path.is_file():
        raise UnlearnBenchError(f"utility questions not found: {path}; {VQA_LAYOUT}")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise UnlearnBenchError(f"{path} line {number} is not JSON ({err}); {VQA_LAYOUT}") from None
        missing = [key for key in ("image", "question", "answer", "type") if key not in item]
        if missing:
            raise UnlearnBenchError(f"{path} line {number} lacks {', '.join(missing)}; {VQA_LAYOUT}")
        image = Path(root) / item["image"]
        if not image.is_file():
            raise UnlearnBenchError(f"{path} line {number}: image file missing: {image}")
        items.append({**item, "image": image})
    if not items:
        raise UnlearnBenchError(f"{path} holds no questions; {VQA_LAYOUT}")
    kinds = sorted({item["type"] for item in items})
    split_items: dict[str, list[dict]] = {"test": [], "val": []}
    for k, kind in enumerate(kinds):
        of_kind = [item for item in items if item["type"] == kind]
        if len(of_kind) < 2:
            raise UnlearnBenchError(f"{path}: question type {kind!r} has {len(of_kind)} question; each type "
                                    "needs at least 2 (validation and test)")
        dealt = deal(len(of_kind), {"val": val_fraction, "test": 1.0}, np.random.default_rng([seed, k]))
        for split, idx in dealt.items():
            split_items[split] += [of_kind[i] for i in sorted(idx)]
    out = {}
    for split, chosen in split_items.items():
        paths = list(dict.fromkeys(item["image"] for item in chosen))
        position = {p: i for i, p in enumerate(paths)}
        images = FileImageSet(paths, [0] * len(paths), ["image"])
        out[split] = Questions(images, [position[item["image"]] for item in chosen], [item["type"] for item in chosen],
                               [item["question"] for item in chosen], [str(item["answer"]) for item in chosen])
    return out

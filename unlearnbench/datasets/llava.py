"""Real data of the ``llava`` suite: the SLUG reference's ``mu_llava_*`` data sets and a file of utility questions.

Under the data root:
- ``mu_llava_<name>/``: one Hugging Face data set per identity to forget, as saved from the hub
  (``data/<split>-00000-of-00001.parquet``; any ``*.parquet`` below the folder is read) or as the hub
  cache keeps it (``datasets--<owner>--mu_llava_<name>/snapshots/<revision>/...``). Columns: ``image``
  (the ``datasets`` Image feature: a ``{"bytes", "path"}`` struct of the encoded file), ``question``,
  ``answer`` (the name), ``image_id`` (optional). ``mu_llava_celeb/``: other people in the same schema.
  Parquet is read with pyarrow, a dependency already: the ``datasets`` library would add nothing but a
  download machinery this offline suite must not use.
- ``vqa.jsonl``: one JSON object per line, ``{"image": "<path relative to the root>",
  "question": "...", "answer": "...", "type": "<question type>"}``: the utility questions.
Splits are deterministic from the seed: per identity (and per question type) the items are shuffled
with ``default_rng([seed, index])`` and dealt out test first, then val, then train.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from unlearnbench.datasets.base import EncodedImageSet, FileImageSet
from unlearnbench.datasets.synthetic.vqa import Questions
from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger(__name__)

POOL = "mu_llava_celeb"  # the reference's data set of other people
DATASET_FOLDER = re.compile(r"^(?:datasets--.+--)?(mu_llava_\w+)$")
MU_LLAVA_LAYOUT = ("expected ROOT/mu_llava_<name>/ (one per identity) and optionally ROOT/mu_llava_celeb/, each "
                   "holding parquet files with columns image ({bytes, path}), question, answer")
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


@dataclass
class IdentityData:
    """Faces of identities, split "train" / "val" / "test"; face i of a split is asked ``questions[split][i]``
    and the answer should contain ``answers[split][i]``."""

    images: dict[str, EncodedImageSet]  # labelled by identity
    questions: dict[str, list[str]]
    answers: dict[str, list[str]]
    targets: list[str]  # the identities with a data set of their own: the ones to forget


def find_datasets(root: Path) -> dict[str, Path]:
    """``mu_llava_*`` data set name -> the folder holding its parquet files, for every data set under ``root``
    saved by name (``mu_llava_elon_musk/``) or as the Hugging Face hub cache keeps it
    (``datasets--<owner>--mu_llava_elon_musk/snapshots/<revision>/``, the revision of ``refs/main``)."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        match = DATASET_FOLDER.match(folder.name)
        if not match:
            continue
        name = match.group(1)
        if name in found:
            raise UnlearnBenchError(f"data set {name} is under {root} twice: {found[name]} and {folder}; keep one")
        found[name] = hub_snapshot(folder)
    return found


def hub_snapshot(folder: Path) -> Path:
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(revisions) != 1:
        raise UnlearnBenchError(f"{snapshots} holds {len(revisions)} revisions and no refs/main naming one; "
                                "keep one revision or write its name to refs/main")
    return revisions[0]


def read_rows(name: str, folder: Path) -> list[dict]:
    """Every row of a data set's parquet files (all splits, files sorted): encoded image, question,
    answer, and where the image came from."""
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise UnlearnBenchError(f"data set {name}: no .parquet files under {folder}; {MU_LLAVA_LAYOUT}")
    rows = []
    for path in files:
        table = pq.read_table(path)
        missing = [c for c in ("image", "question", "answer") if c not in table.column_names]
        if missing:
            raise UnlearnBenchError(f"{path} lacks the column(s) {', '.join(missing)} (it has "
                                    f"{', '.join(table.column_names)}); {MU_LLAVA_LAYOUT}")
        for k, row in enumerate(table.to_pylist()):
            source = f"{path} row {k}" + (f" (image_id {row['image_id']})" if row.get("image_id") is not None else "")
            rows.append({"image": image_bytes(row["image"], path.parent, source), "question": str(row["question"]),
                         "answer": str(row["answer"]).strip(), "source": source})
    return rows


def image_bytes(value, folder: Path, source: str) -> bytes:
    """The encoded image of a cell as the ``datasets`` Image feature stores it: ``{"bytes", "path"}``,
    bytes first, else the file at path (relative to the parquet file)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("path") and (folder / value["path"]).is_file():
        return (folder / value["path"]).read_bytes()
    raise UnlearnBenchError(f"{source}: the image cell holds no image bytes and no readable path ({value!r:.80}); "
                            f"{MU_LLAVA_LAYOUT}")


def load_mu_llava(root: Path, test_fraction: float = 0.2, val_fraction: float = 0.1,
                  seed: int = 0) -> IdentityData:
    """The faces of every ``mu_llava_*`` data set under ``root``, labelled by identity and split.

    Each ``mu_llava_<name>`` holds one identity (its label: its most frequent answer); ``mu_llava_celeb``,
    if present, other people, each labelled by its answer. A row keeps its own question and answer.
    All rows of an identity (every split of its files) are dealt test first, then val, then train.
    """
    datasets = find_datasets(root)
    if not any(name != POOL for name in datasets):
        raise UnlearnBenchError(f"no mu_llava_<name> data set under {root}; {MU_LLAVA_LAYOUT}")
    people: dict[str, list[dict]] = {}
    display: dict[str, str] = {}  # case-folded name -> the spelling shown
    targets = []
    for name, folder in datasets.items():
        rows = read_rows(name, folder)
        if name != POOL:
            answers = Counter(row["answer"] for row in rows)
            label = answers.most_common(1)[0][0]
            if len(answers) > 1:
                log.warning("%s: %d different answers (%s); its faces are labelled %r, each row scored on its "
                            "own answer", name, len(answers), ", ".join(list(answers)[:4]), label)
            display[label.casefold()] = label
            targets.append(label)
        for row in rows:
            label = row["answer"] if name == POOL else targets[-1]
            display.setdefault(label.casefold(), label)
            people.setdefault(label.casefold(), []).append(row)
    if len(people) < 2:
        raise UnlearnBenchError(f"{root} holds {len(people)} identity; the suite needs at least two (a target and "
                                f"others to retain): add mu_llava_celeb or another mu_llava_<name>")
    keys = sorted(people)
    classnames = [display[key] for key in keys]
    picked: dict[str, list[tuple[int, dict]]] = {"test": [], "val": [], "train": []}
    for label, key in enumerate(keys):
        rows = people[key]
        if display[key] in targets and len(rows) < 3:
            raise UnlearnBenchError(f"{display[key]} has {len(rows)} images; a target needs at least 3 (one each "
                                    "for train, validation and test)")
        dealt = deal(len(rows), {"test": test_fraction, "val": val_fraction, "train": 1.0},
                     np.random.default_rng([seed, label]))
        for split, idx in dealt.items():
            picked[split] += [(label, rows[i]) for i in idx]
    return IdentityData(
        images={split: EncodedImageSet([row["image"] for _, row in chosen], [label for label, _ in chosen],
                                       classnames, [row["source"] for _, row in chosen])
                for split, chosen in picked.items()},
        questions={split: [row["question"] for _, row in chosen] for split, chosen in picked.items()},
        answers={split: [row["answer"] for _, row in chosen] for split, chosen in picked.items()},
        targets=sorted(targets))


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

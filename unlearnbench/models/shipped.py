"""The embedded models that ship inside the package, so every machine scores the same base model.

Each shipped model is a folder ``weights/<name>/``: the files its loader reads, as training wrote them
into the cache, and ``card.json``, which says what they are: the settings they were trained from (and
their hash, ``config_key``), the bars training measured, the sha256 of every file, the fingerprint of
the code that trained them, the machine, thread count and time it took. A run reads a shipped model
only after every sha256 matches, and names the file and the fix when one does not.

``weights="shipped"`` (the suites' default) reads the shipped folder for the configurations that ship
(each suite's ``tiny`` preset, and the ``micro`` CLIP the contract checks and tests use: SHIPPED) and
trains any other configuration into the cache; ``weights="trained"`` always uses the cache, training
there on first use (``bench.py train-embedded``). ``bench.py train-embedded --suite S [--preset P]
--ship`` copies freshly trained models over the shipped ones (models/embedded.py: this module is what
the model modules import, so it imports none of them).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path

import torch

from unlearnbench.cache import atomic_folder, atomic_write_text, cache_dir, config_hash
from unlearnbench.errors import UnlearnBenchError

WEIGHTS_DIR = Path(__file__).parent / "weights"
CARD = "card.json"
SOURCES = ("shipped", "trained")
# Each shipped model: the suite and preset whose training writes it (bench.py train-embedded).
SHIPPED = {"ub-clip-tiny": ("clip", "tiny"), "ub-clip-micro": ("clip", "micro"), "tiny-llava": ("llava", "tiny"),
           "canvas-classifiers": ("unlearncanvas", "tiny"), "canvas-t2i": ("unlearncanvas", "tiny")}


def check_source(weights: str) -> str:
    if weights not in SOURCES:
        raise UnlearnBenchError(f"weights={weights!r} is not one of {', '.join(SOURCES)}: 'shipped' reads the "
                                "models shipped in the package, 'trained' trains them into the cache")
    return weights


def model_folder(name: str, settings: dict, weights: str, ships: bool, cache_key: str | None = None) -> Path:
    """Where the embedded model ``name`` trained from ``settings`` is read: its verified shipped folder
    when ``weights`` is "shipped" and this configuration ``ships``, else its cache folder (named by
    ``cache_key``, by default the hash of ``settings``)."""
    if check_source(weights) == "shipped" and ships:
        return verified_folder(name, config_hash(settings))
    return cache_dir() / "models" / f"{name}-{cache_key or config_hash(settings)}"


def is_shipped(folder: Path) -> bool:
    return Path(folder).parent == WEIGHTS_DIR


def start_training(folder: Path) -> None:
    """Called before a model trains into ``folder``: its old card goes (its sha256 would be stale), and a
    shipped folder is never written: one that passed its sha256 check but cannot be read is a model this
    code cannot build (an architecture change without re-shipping)."""
    if is_shipped(folder):
        raise UnlearnBenchError(f"shipped model {folder.name} in {folder} matches its card but this code cannot load "
                                f"it; regenerate it with {train_command(folder.name)} --ship")
    (folder / CARD).unlink(missing_ok=True)


def verified_folder(name: str, config_key: str) -> Path:
    """``weights/<name>``, after checking that its card matches ``config_key`` and every file its sha256."""
    folder = WEIGHTS_DIR / name
    retrain = (f"reinstall unlearnbench (in a clone: git checkout -- {folder_in_repo(folder)}), or train the model "
               f"on this machine and use it: {train_command(name)}, then "
               f"--set embedded_weights=trained")
    card = read_card(folder, retrain)
    if card.get("config_key") != config_key:
        raise UnlearnBenchError(
            f"shipped model {name} was trained from other settings than this code's (card {card.get('config_key')}, "
            f"code {config_key}): the training code changed without re-shipping it. Regenerate it with "
            f"{train_command(name)} --ship, or use --set embedded_weights=trained")
    for file, expected in card["files"].items():
        path = folder / file
        if not path.is_file():
            raise UnlearnBenchError(f"shipped model {name}: {path} is missing; {retrain}")
        if sha256(path) != expected:
            raise UnlearnBenchError(f"shipped model {name}: {path} is corrupt (its sha256 is not the one in "
                                    f"{folder / CARD}); {retrain}")
    return folder


def read_card(folder: Path, fix: str) -> dict:
    path = folder / CARD
    if not path.is_file():
        raise UnlearnBenchError(f"shipped model {folder.name}: {path} is missing; {fix}")
    try:
        card = json.loads(path.read_text())
        if not isinstance(card.get("files"), dict):
            raise ValueError("no 'files' object")
    except ValueError as err:
        raise UnlearnBenchError(f"shipped model {folder.name}: {path} is unreadable ({err}); {fix}") from None
    return card


def write_card(folder: Path, name: str, settings: dict, record: dict, code: str, trained_now: bool) -> None:
    """``card.json`` for a model trained into ``folder`` (``record``: its train.json); the thread count is
    known only when it was ``trained_now``, in this process."""
    files = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != CARD}
    card = {"name": name, "config_key": config_hash(settings), "config": settings,
            "bars": record.get("metrics", {}), "files": files, "code_fingerprint": code,
            "trained": {"at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()}",
                        "torch": torch.__version__,
                        "threads": torch.get_num_threads() if trained_now else None,
                        "seconds": round(sum(v for k, v in record.get("metrics", {}).items()
                                             if k.endswith("train_seconds")), 1)}}
    atomic_write_text(folder / CARD, json.dumps(card, indent=2))


def ship(folder: Path, name: str) -> Path:
    """Copy a trained cache ``folder`` (card included) over the shipped ``weights/<name>``."""
    if not (folder / CARD).is_file():
        raise UnlearnBenchError(f"{folder} has no {CARD}; train it with python bench.py train-embedded first")
    target = WEIGHTS_DIR / name
    atomic_folder(target, lambda tmp: shutil.copytree(folder, tmp, dirs_exist_ok=True))
    return target


def cpu_name() -> str:
    try:  # Linux names the CPU model in /proc/cpuinfo; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_in_repo(folder: Path) -> str:
    """``folder`` relative to the clone the package runs from (absolute if it is not inside it)."""
    root = Path(__file__).parents[2]
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def train_command(name: str) -> str:
    """The command that trains the shipped model ``name``."""
    suite, preset = SHIPPED.get(name, ("unlearncanvas", "tiny"))
    return f"python bench.py train-embedded --suite {suite}" + (f" --preset {preset}" if preset != "tiny" else "")


def ship_folders(suite: str, preset: str) -> list[Path]:
    """The shipped folders ``train-embedded --suite suite --preset preset --ship`` replaces, after checking
    that this configuration ships and that the package's weights folder takes files: before any training."""
    from unlearnbench.cache import check_writable_folder

    names = [name for name, (s, p) in SHIPPED.items() if (s, p) == (suite, preset)]
    if not names:
        ships = sorted({p for s, p in SHIPPED.values() if s == suite})
        raise UnlearnBenchError(f"--ship with --suite {suite} --preset {preset}: that model does not ship (presets "
                                f"that ship for {suite}: {', '.join(ships) or 'none'})")
    folders = [WEIGHTS_DIR / name for name in names]
    for folder in (WEIGHTS_DIR, *(f for f in folders if f.exists())):
        check_writable_folder(folder, "--ship: the shipped models' folder")
    return folders

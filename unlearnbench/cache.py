"""Where trained embedded models, generated data and base-model evaluations are cached, and
atomic file writes so an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path

CACHE_ENV = "UNLEARNBENCH_CACHE"


def cache_dir() -> Path:
    """``$UNLEARNBENCH_CACHE`` if set, else ``~/.cache/unlearnbench``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "unlearnbench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_hash(config: object, length: int = 10) -> str:
    """A short stable hash of a dataclass or JSON-able object (key order does not matter)."""
    payload = asdict(config) if is_dataclass(config) else config
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))

"""Where trained embedded models, generated data and base-model evaluations are cached, and
atomic file writes so an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import functools
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


@functools.cache
def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file here: 0o666 less the process umask.

    Linux reports the umask in /proc/self/status; elsewhere it can only be read by setting it, so it
    is set and restored once, on the first call, instead of on every write.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is created private (mkstemp's 0600); it gets the mode any other new file
    would have before the rename, so outputs and cache files can be shared as the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))

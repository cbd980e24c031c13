"""Where trained embedded models, generated data and base-model evaluations are cached, atomic file
writes so an interrupted run never leaves a half-written file behind, and cache reads that recover
from a damaged file by recomputing it."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TypeVar

from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger(__name__)

CACHE_ENV = "UNLEARNBENCH_CACHE"

T = TypeVar("T")


def cache_root() -> Path:
    """``$UNLEARNBENCH_CACHE`` if set, else ``~/.cache/unlearnbench`` (not created)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "unlearnbench")


def cache_dir() -> Path:
    """The cache root, created if missing."""
    path = cache_root()
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


# Errors of the filesystem, not of the code: a full disk, a quota, a read-only or forbidden folder.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO,
                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is created private (mkstemp's 0600); it gets the mode any other new file
    would have before the rename, so outputs and cache files can be shared as the umask allows.
    A filesystem that refuses the write (full, read-only) is an UnlearnBenchError naming the file;
    the temporary file goes and whatever was written before stays.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            raise write_error(path, err) from None
        raise


def write_error(path: Path, err: OSError) -> UnlearnBenchError:
    full = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    fix = ("free space (or give --out / --cache-dir on another disk)" if full
           else "make it writable (or give --out / --cache-dir elsewhere)")
    return UnlearnBenchError(f"cannot write {path} ({err.strerror or err}); {fix} and rerun: units already "
                             "finished are kept and reused")


def atomic_folder(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a new temporary folder beside ``path``, then rename it to ``path`` (replacing
    an old one), so a reader never sees a half-written folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        os.chmod(tmp, file_mode() | (file_mode() & 0o444) >> 2)  # mkdtemp's 0700 -> what mkdir would give
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def check_writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if missing and prove a file can be written in it (the probe is removed), so
    an unusable output or cache folder fails before any training, not after it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnlearnBenchError(f"{what} {folder} is a file, not a folder; give a folder (created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UnlearnBenchError(f"{what} {folder} cannot be written ({err.strerror or err}); "
                                "give a folder you can create and write in") from None


def read_cached(path: Path, read: Callable[[Path], T], action: str = "retraining") -> T | None:
    """``read(path)``; None if ``path`` does not exist, or, with a warning naming it, if reading fails.

    Cache files are ours and can be recomputed, so a truncated or garbled one (a full disk, a killed
    copy) costs a recomputation instead of failing every run until someone deletes it by hand.
    """
    if not path.exists():
        return None
    try:
        return read(path)
    except Exception as err:  # noqa: BLE001 - any failure to read our own cache file means: recompute it
        reason = " ".join(str(err).split()) or type(err).__name__
        log.warning("%s is unreadable (%s); %s", path, reason[:300], action)
        return None


def read_record(path: Path) -> dict:
    """A ``train.json`` written by a model cache: a JSON object with a ``metrics`` object."""
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError("expected a JSON object with a 'metrics' object")
    return record

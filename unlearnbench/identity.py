"""What determines a result's numbers, as fingerprints, so a stored result is reused only when all
of it is identical.

- ``model_fingerprint``: a hash of the weights themselves (names, dtypes, shapes, bytes), never a
  path: two checkpoints that are both called ``model.pt`` are two models.
- ``code_fingerprint``: a hash of the parsed source of the modules a result runs through: the
  method's module, the suite's module, the runner, and every module they import that is not part of
  the standard library or an installed library (``unlearnbench``'s own, a plugin's helper modules
  beside it), followed transitively, plus the package version. It hashes the syntax tree, so a comment
  or a reformatted line does not invalidate results, while any change to code does.
- ``library_versions``: the versions of the installed libraries that compute results (torch,
  open_clip, diffusers, transformers, timm, numpy, ...): an upgrade recomputes.
- ``files_fingerprint``: the files a suite reads from paths in its settings (real data, ``--weights``):
  every file's relative name, size and modification time, so data replaced in place recomputes.
- ``digest``: the key of a JSON-able identity (suite config, target, method config, seed, ...).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import site
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

import unlearnbench

PACKAGE = "unlearnbench"
PACKAGE_ROOT = Path(unlearnbench.__file__).resolve().parent
# Modules that only format or dispatch results; a change to them cannot change a number.
NOT_RESULT_CODE = (f"{PACKAGE}.reports", f"{PACKAGE}.cli")
# The installed distributions whose code computes results (their versions are part of every identity).
RESULT_LIBRARIES = ("torch", "open_clip_torch", "diffusers", "transformers", "timm", "numpy", "scipy", "scikit-learn",
                    "safetensors", "pillow", "torchmetrics", "lm_eval", "accelerate")


def digest(payload: object, length: int = 16) -> str:
    """A stable hash of a JSON-able object (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict: name, dtype, shape and raw bytes."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return sha.hexdigest()[:16]


def code_fingerprint(*objects: object) -> str:
    """The fingerprint of the code behind ``objects`` (classes or modules) and the runner."""
    modules = {f"{PACKAGE}.runner", *(module_of(obj) for obj in objects)}
    files = sorted(module_closure(modules).items())
    sha = hashlib.sha256(f"{PACKAGE} {unlearnbench.__version__}".encode())
    for name, path in files:
        sha.update(f"\n{name}\n".encode())
        sha.update(syntax_hash(path).encode())
    return sha.hexdigest()[:16]


def module_of(obj: object) -> str:
    return obj.__name__ if inspect.ismodule(obj) else obj.__module__


def module_closure(roots: Iterable[str]) -> dict[str, Path]:
    """Every module reachable from ``roots`` through imports of modules outside the standard library and
    the installed libraries (``unlearnbench``'s own, a plugin and the helper modules it imports): name ->
    file. Library code counts through ``library_versions`` instead."""
    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name.startswith(NOT_RESULT_CODE):
            continue
        path = module_file(name)
        if path is None:
            continue
        found[name] = path
        todo.extend(_imports(str(path), *_stamp(str(path)), name))
    return found


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` if it is project code; None for library and standard-library
    modules, compiled modules, and names that are not modules (imported classes and functions)."""
    if name == PACKAGE:
        return PACKAGE_ROOT / "__init__.py"
    if name.startswith(PACKAGE + "."):
        relative = Path(*name.split(".")[1:])
        for candidate in (PACKAGE_ROOT / relative.with_suffix(".py"), PACKAGE_ROOT / relative / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None
    top = name.partition(".")[0]
    if not top or top in sys.stdlib_module_names or top in sys.builtin_module_names or _is_library(top):
        return None
    module = sys.modules.get(name)
    source = getattr(module, "__file__", None) if module is not None else _spec_origin(name)
    if not source or not source.endswith(".py"):
        return None
    path = Path(source).resolve()
    return None if _under_library_paths(path) else path


def _spec_origin(name: str) -> str | None:
    """Where ``name`` would be imported from, without importing anything new (a submodule only once its
    parent is imported: finding it would import the parent)."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return spec.origin if spec is not None else None


@functools.lru_cache(maxsize=1024)
def _is_library(top: str) -> bool:
    """A top-level module that lives in site-packages (or the standard library's folders)."""
    module = sys.modules.get(top)
    source = getattr(module, "__file__", None) if module is not None else _spec_origin(top)
    return bool(source) and _under_library_paths(Path(source).resolve())


@functools.cache
def _library_paths() -> tuple[Path, ...]:
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(getattr(site, "getsitepackages", list)())
    paths.add(site.getusersitepackages())
    return tuple(Path(p).resolve() for p in paths if p)


def _under_library_paths(path: Path) -> bool:
    return not path.is_relative_to(PACKAGE_ROOT) and any(path.is_relative_to(p) for p in _library_paths())


def library_versions() -> dict[str, str | None]:
    """The installed version of each library in RESULT_LIBRARIES (None: not installed)."""
    versions = {}
    for dist in RESULT_LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def files_fingerprint(path: Path) -> str | None:
    """A hash of the names (relative to ``path``), sizes and modification times of the file ``path`` or
    of every file below the folder ``path`` (symbolic links followed, each folder once); None if it does
    not exist. Reading metadata only keeps it to about a second for a data set of 200,000 files."""
    path = Path(path)
    if not path.exists():
        return None
    sha = hashlib.sha256()
    if path.is_file():
        stat = path.stat()
        sha.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return sha.hexdigest()[:16]
    seen = set()
    for folder, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            file = os.path.join(folder, name)
            try:
                stat = os.stat(file)
            except OSError:  # a dangling link
                continue
            sha.update(f"{os.path.relpath(file, path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()[:16]


def imported_package_modules(path: str, module: str) -> list[str]:
    """Names of the ``unlearnbench`` modules (and imported names, filtered later) ``path`` imports,
    at top level or inside functions (tests/test_imports.py checks them for cycles)."""
    return [name for name in _imports(path, *_stamp(path), module)
            if name == PACKAGE or name.startswith(PACKAGE + ".")]


def syntax_hash(path: Path) -> str:
    return _syntax_hash(str(path), *_stamp(str(path)))


def _stamp(path: str) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=512)
def _syntax_hash(path: str, mtime_ns: int, size: int) -> str:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


@functools.lru_cache(maxsize=512)
def _imports(path: str, mtime_ns: int, size: int, module: str) -> tuple[str, ...]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    is_package = Path(path).name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return tuple(names)

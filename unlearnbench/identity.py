"""What determines a result's numbers, as fingerprints, so a stored result is reused only when all
of it is identical.

- ``model_fingerprint``: a hash of the weights themselves (names, dtypes, shapes, bytes), never a
  path: two checkpoints that are both called ``model.pt`` are two models.
- ``code_fingerprint``: a hash of the parsed source of the modules a result runs through: the
  method's module, the suite's module, the runner, and every ``unlearnbench`` module they import
  (followed transitively), plus the package version. It hashes the syntax tree, so a comment or a
  reformatted line does not invalidate results, while any change to code does.
- ``digest``: the key of a JSON-able identity (suite config, target, method config, seed, ...).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

import unlearnbench

PACKAGE = "unlearnbench"
PACKAGE_ROOT = Path(unlearnbench.__file__).resolve().parent
# Modules that only format or dispatch results; a change to them cannot change a number.
NOT_RESULT_CODE = (f"{PACKAGE}.reports", f"{PACKAGE}.cli")


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
    """Every module reachable from ``roots`` through imports of ``unlearnbench`` modules: name -> file.
    A root outside the package (a plugin) counts with its own file."""
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
        todo.extend(imported_package_modules(str(path), name))
    return found


def module_file(name: str) -> Path | None:
    """The source file of module ``name``; None for names that are not modules (imported classes)."""
    if name == PACKAGE:
        return PACKAGE_ROOT / "__init__.py"
    if name.startswith(PACKAGE + "."):
        relative = Path(*name.split(".")[1:])
        for candidate in (PACKAGE_ROOT / relative.with_suffix(".py"), PACKAGE_ROOT / relative / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None
    module = sys.modules.get(name)
    source = getattr(module, "__file__", None)
    return Path(source) if source and source.endswith(".py") else None


def imported_package_modules(path: str, module: str) -> list[str]:
    """Names of the ``unlearnbench`` modules (and imported names, filtered later) ``path`` imports,
    at top level or inside functions."""
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

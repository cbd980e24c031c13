"""Unlearning patches: the changed tensors of a model, stored as safetensors with metadata.

A patch holds the *new values* of the tensors a method changed. ``apply`` copies them into a model
and returns the inverse patch (the old values), so ``revert`` restores the base model bit for bit.
Storage is measured from the written file: the tensor payload, which the header does not inflate.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from unlearnbench.cache import atomic_write
from unlearnbench.errors import UnlearnBenchError


@dataclass
class Patch:
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def diff(cls, base: dict[str, torch.Tensor], model: nn.Module,
             metadata: dict[str, str] | None = None) -> Patch:
        """The tensors of ``model`` that differ from the ``base`` state dict (exact comparison)."""
        changed = {name: value.detach().clone()
                   for name, value in model.state_dict().items()
                   if not torch.equal(value, base[name])}
        return cls(changed, dict(metadata or {}))

    def apply(self, model: nn.Module) -> Patch:
        """Write the patch into ``model`` in place; return the patch that undoes it."""
        state = model.state_dict()
        missing = sorted(set(self.tensors) - set(state))
        if missing:
            raise UnlearnBenchError(f"patch names tensors the model does not have: {missing}")
        for name, value in self.tensors.items():
            if state[name].shape != value.shape:
                raise UnlearnBenchError(
                    f"patch tensor {name!r} has shape {tuple(value.shape)}, "
                    f"the model's has {tuple(state[name].shape)}")
        inverse = Patch({name: state[name].detach().clone() for name in self.tensors},
                        {**self.metadata, "inverse": "true"})
        with torch.no_grad():
            for name, value in self.tensors.items():
                state[name].copy_(value)
        return inverse

    @property
    def payload_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def save(self, path: Path) -> None:
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.tensors.items()}

        def write(tmp: Path) -> None:
            try:
                save_file(tensors, str(tmp), metadata=self.metadata)
            except SafetensorError as err:  # its I/O errors (a full disk) as the OSError atomic_write reports
                code = re.search(r"os error (\d+)", str(err))
                if code is None:
                    raise
                raise OSError(int(code[1]), os.strerror(int(code[1])), str(tmp)) from None

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> Patch:
        path = Path(path)
        if not path.is_file():
            raise UnlearnBenchError(f"patch file not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
            metadata = dict(f.metadata() or {})
        return cls(tensors, metadata)


def stored_payload_bytes(path: Path) -> int:
    """Bytes of tensor data in a written safetensors file, read from its header's offsets."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    return sum(end - start for name, entry in header.items() if name != "__metadata__"
               for start, end in [entry["data_offsets"]])


def patch_metadata(**values: object) -> dict[str, str]:
    """safetensors metadata must be str -> str; non-strings are stored as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def stored_metadata(path: Path) -> dict[str, object]:
    """A written patch's metadata (what ``patch_metadata`` stored, JSON values decoded), read from its
    header alone: the tensors are not loaded."""
    with safe_open(str(path), framework="pt") as f:
        stored = dict(f.metadata() or {})

    def decode(text: str) -> object:
        try:
            return json.loads(text)
        except ValueError:
            return text  # stored as a plain string

    return {key: decode(value) for key, value in stored.items()}


@contextmanager
def restored_weights(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Snapshot ``model``'s state and put it back on exit, whatever happened inside (an exception,
    a NaN, an interrupted method). Yields the snapshot, the base state a patch is diffed against."""
    base = {name: value.detach().clone() for name, value in model.state_dict().items()}
    try:
        yield base
    finally:
        model.load_state_dict(base)

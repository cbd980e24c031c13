"""Rerun only what an edit can change: open_clip CLIP features of fixed inputs after a one-layer edit.

A search that edits one tensor of block *l* of a tower (SLUG's step search) scores the same validation
inputs many times. Blocks before *l* compute the same thing every time, so their output, the input of
block *l*, is captured once per (inputs, tower, block) and each trial reruns blocks >= *l* and the
tower's head (pooling, final norm, projection) only: a trial on ``visual.proj`` is one matmul on
cached pooled tokens. The captured input is valid for any model whose edits all lie at or after block
*l*, so it may be taken from an edited model; the forward stops as soon as it has it. Batches keep the
caller's sizes, so features equal those of the full forward (tested in tests/test_partial_forward.py).

Models that are not open_clip ``CLIP`` with its own transformers (e.g. Hugging Face text towers) and
edits of the embeddings (which feed block 0) get the full forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import text_global_pool
from torch import nn

TOWERS = ("vision", "text")


class _Captured(Exception):
    """Raised by the capture hook to stop a forward once it has the input it came for."""


def tower_of(name: str) -> str:
    return "vision" if name.startswith("visual.") else "text"


def _blocks(model: nn.Module, tower: str) -> nn.ModuleList:
    return (model.visual.transformer if tower == "vision" else model.transformer).resblocks


def resumable(model: nn.Module) -> bool:
    """An open_clip CLIP whose towers this module knows how to resume (no attentional pooler)."""
    return (isinstance(model, CLIP) and hasattr(model.visual, "transformer")
            and getattr(model.visual, "attn_pool", None) is None)


def first_changed_block(model: nn.Module, changed: set[str], tower: str) -> int | None:
    """The first block of ``tower`` whose output the edit of ``changed`` can change: a block index, the
    number of blocks where only the head (final norm, pooling, projection) changed, or None where an
    embedding or anything before block 0 changed (no reuse)."""
    prefix = "visual.transformer.resblocks." if tower == "vision" else "transformer.resblocks."
    head = ("visual.ln_post", "visual.proj") if tower == "vision" else ("ln_final", "text_projection")
    n_blocks = len(_blocks(model, tower))
    first = n_blocks
    for name in (n for n in changed if tower_of(n) == tower):
        if name.startswith(prefix):
            first = min(first, int(name[len(prefix):].split(".")[0]))
        elif not name.startswith(head):
            return None
    return first


class FeatureCache:
    """Normalised image and text features of named input sets, resumed at the first changed block.

    ``image_features(model, key, batches, changed)`` and ``text_features(model, key, batches, changed)``
    take the inputs as a function giving their batches (called only when a forward needs them). A full
    forward with ``keep_head=True`` (the base model's features, which a search computes first) keeps the
    head's input on the way, so head-only trials need no capture; else one captured block is kept per
    (key, tower) besides the head's: a search moves from layer to layer.
    """

    def __init__(self) -> None:
        # (key, tower) -> block -> (batch-first block inputs, token batches for the text head)
        self._inputs: dict[tuple[str, str], dict[int, tuple[list[torch.Tensor], list[torch.Tensor | None]]]] = {}

    def clear(self) -> None:
        self._inputs.clear()

    def image_features(self, model: nn.Module, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                       changed: set[str] | None, rows: torch.Tensor | None = None,
                       keep_head: bool = False) -> torch.Tensor:
        """(n, dim) features of the images of ``key``; ``rows`` picks some of them (one batch)."""
        return self._features(model, "vision", key, batches, changed, rows, keep_head)

    def text_features(self, model: nn.Module, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                      changed: set[str] | None, keep_head: bool = False) -> torch.Tensor:
        """(n, dim) features of the token batches of ``key``."""
        return self._features(model, "text", key, batches, changed, None, keep_head)

    def _features(self, model: nn.Module, tower: str, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                  changed: set[str] | None, rows: torch.Tensor | None, keep_head: bool) -> torch.Tensor:
        device = next(model.parameters()).device
        resume = resumable(model)
        block = None if changed is None or not resume else first_changed_block(model, changed, tower)
        if block is None:
            chunks = list(batches())
            if rows is not None:
                chunks = [torch.cat(chunks)[rows]]
            stop = len(_blocks(model, tower)) if keep_head and resume and rows is None else None
            inputs, tokens, features = self._forward(model, tower, chunks, stop, device)
            if stop is not None:
                self._inputs.setdefault((key, tower), {})[stop] = (inputs, tokens)
            return torch.cat(features)
        kept = self._inputs.setdefault((key, tower), {})
        if block not in kept:
            head = len(_blocks(model, tower))
            for other in [b for b in kept if b != head]:
                del kept[other]
            inputs, tokens, _ = self._forward(model, tower, list(batches()), block, device, stop_early=True)
            kept[block] = (inputs, tokens)
        inputs, tokens = kept[block]
        if rows is not None:
            inputs = [torch.cat(inputs)[rows]]
            tokens = [None if tokens[0] is None else torch.cat(tokens)[rows]]
        return torch.cat([F.normalize(self._resume(model, tower, x, t, block).float(), dim=-1)
                          for x, t in zip(inputs, tokens)])

    @torch.no_grad()
    def _forward(self, model: nn.Module, tower: str, batches: list[torch.Tensor], block: int | None,
                 device: torch.device, stop_early: bool = False
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor]]:
        """Encode every batch, keeping the input of ``block`` (the transformer's output for the head;
        None: keep nothing); ``stop_early`` ends each forward there (no features returned)."""
        blocks = _blocks(model, tower)
        transformer = model.visual.transformer if tower == "vision" else model.transformer
        encode = model.encode_image if tower == "vision" else model.encode_text
        seen: list[torch.Tensor] = []

        def keep_input(module, args, kwargs):
            x = args[0] if args else kwargs["q_x"]
            seen.append(x if transformer.batch_first else x.transpose(0, 1))  # kept batch-first
            if stop_early:
                raise _Captured

        def keep_output(module, args, output):
            seen.append(output)
            if stop_early:
                raise _Captured

        hook = None
        if block is not None:
            hook = (blocks[block].register_forward_pre_hook(keep_input, with_kwargs=True) if block < len(blocks)
                    else transformer.register_forward_hook(keep_output))
        inputs, tokens, features = [], [], []
        try:
            for batch in batches:
                batch = batch.to(device)
                try:
                    features.append(F.normalize(encode(batch).float(), dim=-1))
                except _Captured:
                    pass
                if block is not None:
                    inputs.append(seen.pop())
                    tokens.append(batch if tower == "text" else None)
        finally:
            if hook is not None:
                hook.remove()
        return inputs, tokens, features

    @staticmethod
    def _resume(model: nn.Module, tower: str, x: torch.Tensor, tokens: torch.Tensor | None,
                block: int) -> torch.Tensor:
        """Blocks >= ``block`` and the head, from the captured (batch-first) input ``x``."""
        transformer = model.visual.transformer if tower == "vision" else model.transformer
        blocks = transformer.resblocks
        if block < len(blocks):
            mask = None if tower == "vision" else model.attn_mask
            x = x if transformer.batch_first else x.transpose(0, 1)
            for resblock in blocks[block:]:
                x = resblock(x, attn_mask=mask)
            x = x if transformer.batch_first else x.transpose(0, 1)
        if tower == "vision":
            visual = model.visual
            pooled, _ = visual._pool(x)
            return pooled @ visual.proj if visual.proj is not None else pooled
        x = model.ln_final(x)
        x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
        projection = model.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

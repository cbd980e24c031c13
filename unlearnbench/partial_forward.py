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


def resume_point(model: nn.Module, changed: set[str], tower: str) -> tuple[int, str] | None:
    """Where to resume after the edit of ``changed``: (block, part) with part "block" (rerun the whole
    block), "mlp" (only its MLP branch changed: keep the attention branch's result) or "c_proj" (only
    the MLP's output layer: keep its input too); None: no reuse."""
    block = first_changed_block(model, changed, tower)
    if block is None or block == len(_blocks(model, tower)) or not plain_block(_blocks(model, tower)[block]):
        return None if block is None else (block, "block")
    prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{block}."
    inside = [n[len(prefix):] for n in changed if n.startswith(prefix)]
    if all(n.startswith("mlp.c_proj.") for n in inside):
        return block, "c_proj"
    if all(n.startswith(("mlp.", "ln_2.")) for n in inside):
        return block, "mlp"
    return block, "block"


def all_points(model: nn.Module, tower: str) -> list[tuple[int, str]]:
    """Every resume point of ``tower``: each block's, its MLP's where it is open_clip's plain block, the head's."""
    blocks = _blocks(model, tower)
    parts = [(b, p) for b, block in enumerate(blocks)
             for p in (("block", "mlp", "c_proj") if plain_block(block) else ("block",))]
    return [*parts, (len(blocks), "block")]


def plain_block(block: nn.Module) -> bool:
    """open_clip's ResidualAttentionBlock: x + ls_1(attention(ln_1(x))), then + ls_2(mlp(ln_2(x))), with an
    MLP ending in c_proj (what the "mlp" and "c_proj" resume points rebuild)."""
    return (type(block).__name__ == "ResidualAttentionBlock" and all(hasattr(block, a) for a in ("ln_2", "ls_2", "mlp"))
            and list(block.mlp._modules)[-1:] == ["c_proj"])


KEEP_BYTES = 2 * 1024**3  # what the base pass may keep of every block (``FeatureCache``), per input set


class FeatureCache:
    """Normalised image and text features of named input sets, resumed where an edit starts to matter.

    ``image_features(model, key, batches, changed)`` and ``text_features(model, key, batches, changed)``
    take the inputs as a function giving their batches (called only when a forward needs them). The
    full forward with ``keep=True`` (the base model's features, which a search computes first) keeps on
    the way what every resume point needs (``resume_point``), within ``KEEP_BYTES`` per input set, else
    the head's input only. A point missing is captured when first needed, by a forward that stops there,
    and kept until a trial needs another: a search moves from layer to layer.
    """

    def __init__(self) -> None:
        # (key, tower) -> point -> the batch-first tensors resuming there needs, joined over batches
        self._kept: dict[tuple[str, str], dict[tuple[int, str], tuple[torch.Tensor, ...]]] = {}
        self._sizes: dict[tuple[str, str], list[int]] = {}  # the batch sizes they came in
        self._tokens: dict[str, torch.Tensor] = {}  # text key -> its tokens (the text head pools on them)
        self._from_base: dict[tuple[str, str], set[tuple[int, str]]] = {}  # points the base pass kept

    def clear(self) -> None:
        self._kept.clear()
        self._sizes.clear()
        self._tokens.clear()
        self._from_base.clear()

    def image_features(self, model: nn.Module, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                       changed: set[str] | None, rows: torch.Tensor | None = None, keep: bool = False) -> torch.Tensor:
        """(n, dim) features of the images of ``key``; ``rows`` picks some of them (one batch)."""
        return self._features(model, "vision", key, batches, changed, rows, keep)

    def text_features(self, model: nn.Module, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                      changed: set[str] | None, keep: bool = False) -> torch.Tensor:
        """(n, dim) features of the token batches of ``key``."""
        return self._features(model, "text", key, batches, changed, None, keep)

    def _features(self, model: nn.Module, tower: str, key: str, batches: Callable[[], Iterable[torch.Tensor]],
                  changed: set[str] | None, rows: torch.Tensor | None, keep: bool) -> torch.Tensor:
        device = next(model.parameters()).device
        resume = resumable(model)
        point = None if changed is None or not resume else resume_point(model, changed, tower)
        if point is None:
            chunks = [b.to(device) for b in batches()]
            if rows is not None:
                chunks = [torch.cat(chunks)[rows]]
            keep = keep and resume and rows is None
            kept, features = self._forward(model, tower, chunks, all_points(model, tower) if keep else [])
            if keep:
                self._store(key, tower, kept, chunks, base=True)
            return torch.cat(features)
        points = self._kept.get((key, tower), {})
        if point not in points:
            chunks = [b.to(device) for b in batches()]
            kept, _ = self._forward(model, tower, chunks, [point], stop_early=True)
            self._store(key, tower, kept, chunks, base=False)
            points = self._kept[(key, tower)]
        kept, tokens = points[point], self._tokens.get(key)
        if rows is not None:
            pieces = [(tuple(t[rows] for t in kept), None if tokens is None else tokens[rows])]
        else:  # the caller's batches, so features equal the full forward's
            sizes = self._sizes[(key, tower)]
            token_batches = tokens.split(sizes) if tokens is not None else [None] * len(sizes)
            pieces = list(zip(zip(*[t.split(sizes) for t in kept]), token_batches))
        return torch.cat([F.normalize(self._resume(model, tower, x, t, point).float(), dim=-1) for x, t in pieces])

    def _store(self, key: str, tower: str, kept: dict[tuple[int, str], list], chunks: list[torch.Tensor],
               base: bool) -> None:
        """Keep each point's tensors joined over batches (a trial on some rows indexes them, no copy of the rest)."""
        points = self._kept.setdefault((key, tower), {})
        from_base = self._from_base.setdefault((key, tower), set())
        if base:
            points.clear()
            from_base.clear()
            from_base.update(kept)
        else:  # one captured point at a time besides the base pass's
            for other in [p for p in points if p not in from_base]:
                del points[other]
        points.update({p: tuple(torch.cat(parts) for parts in zip(*batches)) for p, batches in kept.items()})
        self._sizes[(key, tower)] = [len(c) for c in chunks]
        if tower == "text":
            self._tokens[key] = torch.cat(chunks)

    @torch.no_grad()
    def _forward(self, model: nn.Module, tower: str, batches: list[torch.Tensor], points: list[tuple[int, str]],
                 stop_early: bool = False) -> tuple[dict[tuple[int, str], list[tuple[torch.Tensor, ...]]], list]:
        """Encode every batch, keeping what resuming at each of ``points`` needs: a block's input ("block"),
        its MLP branch's input (x after attention: "mlp"), that and its MLP output layer's input ("c_proj"),
        or the transformer's output (the head's point). ``stop_early`` (one point) ends each forward
        there, with no features. Keeping everything stops, but the head's, past ``KEEP_BYTES``."""
        blocks = _blocks(model, tower)
        transformer = model.visual.transformer if tower == "vision" else model.transformer
        encode = model.encode_image if tower == "vision" else model.encode_text
        head = (len(blocks), "block")
        seen: dict[tuple[str, int], torch.Tensor] = {}
        last = None
        if stop_early:
            block, part = points[0]
            last = ("out", block) if block == len(blocks) else {"block": "in", "mlp": "mid", "c_proj": "h"}[part], block

        def keeper(name: str, block: int, output: bool = False):
            def hook(module, args, *rest):
                x = rest[-1] if output else args[0]
                seen[(name, block)] = x if output or transformer.batch_first else x.transpose(0, 1)
                if (name, block) == last:
                    raise _Captured
            return hook

        hooks = []
        wanted = {(b, p) for b, p in points}
        if head in wanted:
            hooks.append(transformer.register_forward_hook(keeper("out", len(blocks), output=True)))
        for b, p in wanted - {head}:
            if p == "block":
                hooks.append(blocks[b].register_forward_pre_hook(keeper("in", b)))
            else:
                hooks.append(blocks[b].ln_2.register_forward_pre_hook(keeper("mid", b)))
            if p == "c_proj":
                hooks.append(blocks[b].mlp.c_proj.register_forward_pre_hook(keeper("h", b)))
        kept: dict[tuple[int, str], list[tuple[torch.Tensor, ...]]] = {p: [] for p in wanted}
        features, size = [], 0
        try:
            for batch in batches:
                try:
                    features.append(F.normalize(encode(batch).float(), dim=-1))
                except _Captured:
                    pass
                for b, p in kept:
                    names = {"block": ["in"], "mlp": ["mid"], "c_proj": ["mid", "h"]}[p] if b < len(blocks) else ["out"]
                    kept[(b, p)].append(tuple(seen[(n, b)] for n in names))
                size += sum(t.numel() * t.element_size() for t in {id(t): t for t in seen.values()}.values())
                seen.clear()
                if len(kept) > 1 and size * len(batches) > KEEP_BYTES * max(1, len(features)):
                    for other in [p for p in kept if p != head]:  # too much to keep: the head's input only
                        del kept[other]
                    for hook in hooks[1 if head in wanted else 0:]:
                        hook.remove()
        finally:
            for hook in hooks:
                hook.remove()
        return kept, features

    @staticmethod
    def _resume(model: nn.Module, tower: str, kept: tuple[torch.Tensor, ...], tokens: torch.Tensor | None,
                point: tuple[int, str]) -> torch.Tensor:
        """The rest of the tower from what was kept at ``point`` (batch-first tensors)."""
        transformer = model.visual.transformer if tower == "vision" else model.transformer
        blocks = transformer.resblocks
        block, part = point
        x = kept[0]
        if block < len(blocks):
            mask = None if tower == "vision" else model.attn_mask
            x = x if transformer.batch_first else x.transpose(0, 1)
            if part != "block":  # open_clip's block after its attention branch (plain_block)
                current = blocks[block]
                if part == "c_proj":
                    h = kept[1] if transformer.batch_first else kept[1].transpose(0, 1)
                    x = x + current.ls_2(current.mlp.c_proj(h))
                else:
                    x = x + current.ls_2(current.mlp(current.ln_2(x)))
                block += 1
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

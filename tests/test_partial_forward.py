"""Partial forwards (unlearnbench.partial_forward): features after a one-tensor edit, recomputed from
the first block the edit changes, equal the full forward's; and only those blocks run."""

from __future__ import annotations

import pytest
import torch

from unlearnbench.benchmarks.clip import clip_layer_groups
from unlearnbench.partial_forward import FeatureCache, first_changed_block, resume_point


def edited(model, name: str, seed: int = 0):
    """Context: ``name`` moved by a random step, restored afterwards."""
    param = dict(model.named_parameters())[name]
    w0 = param.detach().clone()
    gen = torch.Generator().manual_seed(seed)

    class Edit:
        def __enter__(self):
            with torch.no_grad():
                param.add_(0.5 * w0.norm() / w0.numel() ** 0.5 * torch.randn(w0.shape, generator=gen))

        def __exit__(self, *exc):
            with torch.no_grad():
                param.copy_(w0)

    return Edit()


@pytest.fixture(scope="module")
def inputs(micro_suite):
    suite = micro_suite
    images = suite.tensors("identities", "val")
    tokens = suite.assets.tokenizer([f"a photo of {n}." for n in suite.targets()] * 3)
    return suite.base_model(), (lambda: images.batches(64)), (lambda: [tokens[:40], tokens[40:]])


def test_first_changed_block_by_tensor(micro_suite):
    model = micro_suite.base_model()
    n = len(model.visual.transformer.resblocks)
    assert first_changed_block(model, {"visual.proj"}, "vision") == n
    assert first_changed_block(model, {"visual.transformer.resblocks.1.mlp.c_fc.weight"}, "vision") == 1
    assert first_changed_block(model, {"visual.conv1.weight"}, "vision") is None  # feeds block 0: no reuse
    assert first_changed_block(model, {"text_projection", "transformer.resblocks.0.attn.in_proj_weight"}, "text") == 0
    assert first_changed_block(model, {"visual.proj"}, "text") == len(model.transformer.resblocks)
    block = "visual.transformer.resblocks.0."
    assert resume_point(model, {block + "mlp.c_proj.weight"}, "vision") == (0, "c_proj")
    assert resume_point(model, {block + "mlp.c_fc.weight", block + "ln_2.weight"}, "vision") == (0, "mlp")
    assert resume_point(model, {block + "mlp.c_fc.weight", block + "attn.out_proj.weight"}, "vision") == (0, "block")
    assert resume_point(model, {"visual.proj"}, "vision") == (n, "block")


def test_resumed_features_equal_the_full_forward_for_every_candidate(inputs):
    model, images, tokens = inputs

    def full_image():
        return torch.cat([torch.nn.functional.normalize(model.encode_image(b), dim=-1) for b in images()])

    def full_text():
        return torch.cat([torch.nn.functional.normalize(model.encode_text(b), dim=-1) for b in tokens()])

    rows = torch.tensor([3, 17, 42, 5])
    with torch.no_grad():
        cache = FeatureCache()
        cache.image_features(model, "img", images, None, keep=True)  # the base pass keeps the head's input
        cache.text_features(model, "txt", tokens, None, keep=True)
        for name, tower in clip_layer_groups(model).items():
            with edited(model, name):
                if tower == "vision":
                    expected = full_image()
                    torch.testing.assert_close(cache.image_features(model, "img", images, {name}), expected)
                    torch.testing.assert_close(cache.image_features(model, "img", images, {name}, rows), expected[rows])
                else:
                    torch.testing.assert_close(cache.text_features(model, "txt", tokens, {name}), full_text())


def test_only_the_blocks_at_or_after_the_edit_run(inputs, monkeypatch):
    model, images, _ = inputs
    blocks = model.visual.transformer.resblocks
    calls = []
    for i, block in enumerate(blocks):
        monkeypatch.setattr(block, "forward", lambda *a, i=i, f=block.forward, **k: calls.append(i) or f(*a, **k))
    cache = FeatureCache()
    with torch.no_grad():
        cache.image_features(model, "img", images, None, keep=True)
        calls.clear()
        with edited(model, "visual.proj"):
            cache.image_features(model, "img", images, {"visual.proj"})
        assert calls == []  # the head alone: pooled tokens times the projection
        last = len(blocks) - 1
        in_proj = f"visual.transformer.resblocks.{last}.attn.in_proj_weight"
        with edited(model, in_proj):
            cache.image_features(model, "img", images, {in_proj})
            calls.clear()  # the capture above ran the blocks before it once; each trial after runs the last
            cache.image_features(model, "img", images, {in_proj})
        assert set(calls) == {last}
        attention = []
        original = blocks[0].attention
        monkeypatch.setattr(blocks[0], "attention", lambda *a, **k: attention.append(1) or original(*a, **k))
        for name in ("mlp.c_proj.weight", "mlp.c_fc.weight"):  # each trial keeps block 0's attention result
            with edited(model, f"visual.transformer.resblocks.0.{name}"):
                cache.image_features(model, "img", images, {f"visual.transformer.resblocks.0.{name}"})
                attention.clear()
                cache.image_features(model, "img", images, {f"visual.transformer.resblocks.0.{name}"})
            assert attention == [], name


def test_suite_validation_after_an_edit_equals_the_uncached_one(micro_suite):
    task = micro_suite.task(micro_suite.targets()[0])
    task.base_validation()
    for name in ("visual.proj", "visual.transformer.resblocks.0.mlp.c_proj.weight", "text_projection",
                 "transformer.resblocks.0.attn.out_proj.weight"):
        with edited(task.model, name, seed=1):
            cached = task.validate(task.model, {name})
            forget_only = task.validate_forget(task.model, {name})
            full = task.validate(task.model, None)
        assert cached == pytest.approx(full, abs=1e-6), name
        assert forget_only["FA@1"] == pytest.approx(full["FA@1"], abs=1e-6)

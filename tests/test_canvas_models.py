"""MiniCanvas: the procedural data, its classifiers, the TextToImage wrapper and the micro diffusion model."""

import dataclasses

import numpy as np
import pytest
import torch

from unlearnbench.datasets.synthetic.canvas import (PARAPHRASE_TEMPLATES, STYLES, TRAIN_TEMPLATE, CanvasDataConfig,
                                                    make_canvas_data, prompt)
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.models.canvas_classifier import frechet_distance, load_or_train_classifiers
from unlearnbench.models.t2i import SamplerConfig
from unlearnbench.models.tiny_diffusion import PRESETS, build_model, build_tokenizer, load_or_train, preset

MICRO = PRESETS["micro"]
SMALL = CanvasDataConfig(images_per_pair=(3, 1, 2))


def test_data_is_deterministic_and_seeded():
    a, b = make_canvas_data(SMALL), make_canvas_data(SMALL)
    for split in ("train", "val", "test"):
        assert np.array_equal(a.splits[split].pixels, b.splits[split].pixels)
        assert torch.equal(a.splits[split].style_labels, b.splits[split].style_labels)
    other = make_canvas_data(dataclasses.replace(SMALL, seed=1))
    assert not np.array_equal(a.splits["train"].pixels, other.splits["train"].pixels)


def test_every_pair_is_in_every_split_with_distinct_images():
    data = make_canvas_data(SMALL)
    n_pairs = len(data.styles) * len(data.objects)
    assert len(data.styles) >= 8 and len(data.objects) >= 6
    seen = {}
    for split, count in zip(("train", "val", "test"), SMALL.images_per_pair):
        s = data.splits[split]
        assert s.pixels.shape == (n_pairs * count, 16, 16, 3) and s.pixels.dtype == np.uint8
        pairs = set(zip(s.style_labels.tolist(), s.object_labels.tolist()))
        assert len(pairs) == n_pairs
        seen[split] = {image.tobytes() for image in s.pixels}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"])
    images = data.splits["train"].images()
    assert images.shape == (n_pairs * 3, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert data.captions("val")[0] == prompt(data.styles[0], data.objects[0])


def test_style_names_are_unlearncanvas_names_unrelated_to_the_looks():
    """As in UnlearnCanvas: every name is one of its style names, few names share a word (UnlearnCanvas: 9 of
    51), and styles that look alike (one palette, or one technique) do not share names' words."""
    from unlearnbench.datasets.unlearncanvas import UNLEARNCANVAS_STYLES, style_prompt_name  # noqa: PLC0415

    names = [s.name for s in STYLES]
    assert len(set(names)) == len(names) == 12 and make_canvas_data(SMALL).styles == names[:SMALL.n_styles]
    assert set(names) <= {style_prompt_name(s) for s in UNLEARNCANVAS_STYLES}
    sharing = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if set(a.split()) & set(b.split())]
    assert sharing == [("Warm Love", "Warm Smear")]
    looks = {(s.palette, s.technique) for s in STYLES}
    assert len(looks) == 12  # the whole 4 palettes x 3 techniques grid, each look once
    for a in STYLES:
        for b in STYLES:
            if a != b and (a.palette == b.palette or a.technique == b.technique) and (a.name, b.name) not in sharing:
                assert not set(a.name.split()) & set(b.name.split()), (a, b)


def test_paraphrases_are_held_out_from_the_training_template():
    assert prompt("Warm Love", "cat") == "A cat image in Warm Love style."
    assert TRAIN_TEMPLATE not in PARAPHRASE_TEMPLATES and len(PARAPHRASE_TEMPLATES) >= 2
    for template in PARAPHRASE_TEMPLATES:
        assert "{style}" in template and "{object}" in template
        assert prompt("S", "O", template) != prompt("S", "O")
    tokenizer = build_tokenizer(MICRO.context_length)
    for template in (TRAIN_TEMPLATE, *PARAPHRASE_TEMPLATES):
        ids = tokenizer(prompt(STYLES[0].name, "cat", template)).input_ids
        assert tokenizer.unk_token_id not in ids and len(ids) <= MICRO.context_length


def test_bad_sizes_and_presets_are_clear_errors():
    with pytest.raises(UnlearnBenchError, match="n_styles=99"):
        make_canvas_data(CanvasDataConfig(n_styles=99))
    with pytest.raises(UnlearnBenchError, match="micro"):
        preset("huge")


def test_classifiers_recognise_held_out_images_and_give_features():
    classifiers = load_or_train_classifiers(MICRO.data, MICRO.classifier)
    assert classifiers.metrics["style_test_acc"] >= 0.9 and classifiers.metrics["object_test_acc"] >= 0.9
    test = make_canvas_data(MICRO.data).splits["test"]
    style_pred, object_pred = classifiers.classify(test.images())
    assert (style_pred == test.style_labels).float().mean() >= 0.9
    with torch.no_grad():
        features = classifiers.style.features(test.images())
    assert features.shape == (len(test), classifiers.style.head.in_features)
    half = len(features) // 2
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-3)
    assert frechet_distance(features[:half], features[half:]) > 1e-2
    cached = load_or_train_classifiers(MICRO.data, MICRO.classifier)
    assert all(torch.equal(a, b) for a, b in zip(cached.style.state_dict().values(),
                                                 classifiers.style.state_dict().values()))


@pytest.fixture(scope="module")
def fresh_model():
    torch.manual_seed(0)
    return build_model(MICRO, build_tokenizer(MICRO.context_length))


def test_parameters_are_named_by_unet_and_text_encoder(fresh_model):
    names = list(fresh_model.state_dict())
    assert names and all(n.startswith(("unet.", "text_encoder.")) for n in names)
    assert any(n.startswith("text_encoder.encoder.layers.0.") for n in names)
    assert any(".attn2.to_k." in n for n in names)  # cross-attention, what ESD-x edits
    assert fresh_model.vae is None and fresh_model.image_size == 16


def test_sampling_is_deterministic_per_prompt_and_seed(fresh_model):
    prompts = [prompt("Impressionism", "cat"), prompt("Cubism", "fish")]
    a = fresh_model.sample(prompts, [188, 288], steps=3, guidance=2.0)
    b = fresh_model.sample(prompts, [188, 288], steps=3, guidance=2.0)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    other_seed = fresh_model.sample(prompts[:1], [189], steps=3, guidance=2.0)
    assert not torch.equal(other_seed[0], a[0])
    alone = fresh_model.sample(prompts[1:], [288], steps=3, guidance=2.0)  # batch-independent noise
    torch.testing.assert_close(alone[0], a[1], atol=1e-4, rtol=0)
    with pytest.raises(UnlearnBenchError, match="one seed per prompt"):
        fresh_model.sample(prompts, [1], steps=3, guidance=2.0)


def test_each_prompt_draws_fresh_noise_at_one_seed(fresh_model, monkeypatch):
    """As the official evaluation (seed once, then new noise per prompt): two prompts at one seed start
    from different noise, and one (prompt, seed) always from the same."""
    import unlearnbench.models.t2i as t2i

    starts = []
    randn = t2i.randn_tensor
    monkeypatch.setattr(t2i, "randn_tensor", lambda *a, **k: starts.append(randn(*a, **k)) or starts[-1])
    prompts = [prompt("Impressionism", "cat"), prompt("Cubism", "fish")]
    fresh_model.sample(prompts, [188, 188], steps=1, guidance=2.0)
    fresh_model.sample(prompts[1:], [188], steps=1, guidance=2.0)
    assert not torch.equal(starts[0][0], starts[0][1])
    assert torch.equal(starts[1][0], starts[0][1])
    assert t2i.noise_seed(prompts[0], 188) != t2i.noise_seed(prompts[1], 188)


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(UnlearnBenchError, match="NoSuchScheduler"):
        build_model(dataclasses.replace(MICRO, sampler=SamplerConfig(scheduler="NoSuchScheduler")),
                    build_tokenizer(MICRO.context_length))


def test_noise_loss_is_finite_and_falls_when_trained():
    torch.manual_seed(0)
    model = build_model(MICRO, build_tokenizer(MICRO.context_length))
    data = make_canvas_data(SMALL)
    images, captions = data.splits["train"].images()[:32], data.captions("train")[:32]
    t = torch.randint(0, 1000, (32,), generator=torch.Generator().manual_seed(1))

    def fixed_loss() -> float:
        with torch.no_grad():
            return model.noise_loss(images, captions, generator=torch.Generator().manual_seed(2), timesteps=t).item()

    before = fixed_loss()
    assert np.isfinite(before)
    assert model.noise_loss(images, captions, timesteps=500).ndim == 0
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(8):
        loss = model.noise_loss(images, captions, generator=torch.Generator().manual_seed(100 + step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < before


def test_micro_model_trains_caches_and_beats_chance():
    trained = load_or_train(MICRO)
    n_styles = len(trained.data.styles)
    assert trained.metrics["style_acc"] >= 2 / n_styles, trained.metrics
    assert trained.metrics["train_seconds"] > 0 and "paraphrase_style_acc" in trained.metrics
    again = load_or_train(MICRO)
    assert again.path == trained.path
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 trained.model.state_dict().values()))
    # Sampling settings are not part of the weights' key: changing them re-measures, never retrains.
    resampled = load_or_train(dataclasses.replace(MICRO, sampler=dataclasses.replace(MICRO.sampler, steps=3)))
    assert resampled.path == trained.path and resampled.metrics["train_seconds"] == trained.metrics["train_seconds"]
    assert trained.model_id == trained.path.name and trained.sample_steps == MICRO.sampler.steps

"""Passes per model component (unlearnbench/passes.py), their real-scale projection (unlearnbench/real_scale.py)
and ``bench.py costs``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from unlearnbench import real_scale
from unlearnbench.cli import main
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.passes import PassCounter, model_components, real_scale as scaled
from unlearnbench.real_scale import PassTime, project
from unlearnbench.runner import RunSpec, run


def counts(counter: PassCounter, component: str, phase: str | None = None) -> dict[str, float]:
    """The component's counts, summed over phases (or of one phase)."""
    total = dict.fromkeys(("forward", "backward", "real_forward", "real_backward"), 0.0)
    for (name, counted_phase), row in counter.counts.items():
        if name == component and phase in (None, counted_phase):
            total = {k: total[k] + row[k] for k in total}
    return total


@pytest.fixture()
def clip_model(micro_suite):
    return micro_suite.base_model()


def images(micro_suite, n: int) -> torch.Tensor:
    size = micro_suite.base_model().visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    return torch.randn(n, 3, size, size)


def test_a_full_forward_counts_one_pass_per_sample_and_backward_only_where_gradients_flow(micro_suite, clip_model):
    x = images(micro_suite, 5)
    with PassCounter(model_components(clip_model)).counting() as counter, torch.no_grad():
        clip_model.encode_image(x)
    assert counts(counter, "image_encoder")["forward"] == pytest.approx(5)
    assert counts(counter, "image_encoder")["backward"] == 0 and counts(counter, "text_encoder")["forward"] == 0

    with PassCounter(model_components(clip_model)).counting() as counter:
        clip_model.encode_image(x).pow(2).sum().backward()
    assert counts(counter, "image_encoder")["backward"] == pytest.approx(5)
    clip_model.zero_grad(set_to_none=True)


def test_a_tower_resumed_at_its_last_block_counts_that_blocks_share(micro_suite, clip_model):
    blocks = clip_model.visual.transformer.resblocks
    width = clip_model.visual.transformer.width
    with PassCounter(model_components(clip_model)).counting() as counter, torch.no_grad():
        blocks[-1](torch.randn(4, 10, width))
    assert counts(counter, "image_encoder")["forward"] == pytest.approx(4 / len(blocks))


def test_hooks_are_removed_after_counting(clip_model, micro_suite):
    with PassCounter(model_components(clip_model)).counting() as counter:
        pass
    with torch.no_grad():
        clip_model.encode_image(images(micro_suite, 2))
    assert counter.table().empty


@pytest.fixture(scope="module")
def canvas_suite():
    from unlearnbench.benchmarks.unlearncanvas import UnlearnCanvasConfig, UnlearnCanvasSuite

    suite = UnlearnCanvasSuite(UnlearnCanvasConfig(embedded="micro", test_seeds=(188,), retain_samples=64))
    suite.assets
    return suite


def test_sampling_steps_scale_to_the_real_protocol_and_a_missing_vae_still_counts_decodes(canvas_suite):
    model = canvas_suite.base_model()
    with PassCounter(model_components(model)).counting() as counter, scaled({"unet": 10}):
        model.sample(["a", "b"], [1, 2], steps=3, guidance=2.0)
    unet = counts(counter, "unet")
    assert unet["forward"] == 3 * 4  # 3 steps of a guided batch: 2 prompts x (unconditional, conditional)
    assert unet["real_forward"] == 10 * unet["forward"]
    assert counts(counter, "vae_decoder")["forward"] == 2  # the embedded model has no VAE: one decode per image
    assert counts(counter, "text_encoder")["real_forward"] == counts(counter, "text_encoder")["forward"] > 0


def test_the_suite_generates_at_the_real_step_count_and_counts_its_judges(canvas_suite):
    model = canvas_suite.base_model()
    components = {**model_components(model), **{n: [m] for n, m in canvas_suite.judges().items()}}
    target = canvas_suite.targets()[0]
    with PassCounter(components).counting() as counter, torch.no_grad():
        canvas_suite.quick_scores(model, target)
    unet = counts(counter, "unet")
    steps = canvas_suite.assets.steps
    assert unet["real_forward"] == pytest.approx(unet["forward"] * 100 / steps)  # UnlearnCanvas: DDIM 100
    images_made = counts(counter, "vae_decoder")["forward"]
    assert images_made > 0
    judged = counts(counter, "style_classifier")["forward"], counts(counter, "object_classifier")["forward"]
    assert judged == (images_made, images_made)


def test_language_model_prompt_passes_and_decode_steps_are_counted_apart():
    from unlearnbench.benchmarks.llava import LlavaSuite, LlavaSuiteConfig

    suite = LlavaSuite(LlavaSuiteConfig(embedded="micro", retain_samples=96, batch_size=32))
    model = suite.base_model()
    task = suite.task(suite.targets()[0])
    with PassCounter(model_components(model)).counting() as counter:
        task.validate_forget(model)
    prompts, steps = counts(counter, "language_model")["forward"], counts(counter, "language_model_decode")["forward"]
    assert prompts > 0 and steps > 0
    assert counts(counter, "vision_tower")["forward"] > 0 and counts(counter, "projector")["forward"] > 0


def test_projection_multiplies_passes_by_per_sample_times():
    passes = pd.DataFrame([{"component": "unet", "forward": 10, "backward": 2, "real_forward": 200, "real_backward": 2},
                           {"component": "vae_decoder", "forward": 3, "backward": 0, "real_forward": 3,
                            "real_backward": 0}])
    times = {"unet": PassTime(0.5, 1.5, 1), "vae_decoder": PassTime(2.0, None, 1)}
    projected = project(passes, times)
    assert projected.seconds.tolist() == [200 * 0.5 + 2 * 1.5, 3 * 2.0]
    with pytest.raises(UnlearnBenchError, match="backward"):
        project(passes.assign(real_backward=[2, 1]), times)
    with pytest.raises(UnlearnBenchError, match="no real-scale time for component 'unet'"):
        project(passes, {"vae_decoder": times["vae_decoder"]})


@pytest.fixture(scope="module")
def clip_run(micro_suite, tmp_path_factory):
    spec = RunSpec(suite="clip", methods=["slug", "ga"], out_dir=tmp_path_factory.mktemp("runs"), run_id="costs",
                   method_overrides={"ga": {"epochs": "2"}})
    return run(spec, micro_suite)


def test_every_unit_stores_its_passes_with_the_base_validation_and_precompute_apart(clip_run):
    for name, info in clip_run.manifest["units"].items():
        table = clip_run.artifacts[f"{name}/passes"]
        assert set(table.component) == {"image_encoder", "text_encoder"}
        # both methods judge steps against the base
        assert {"method", "base_validation"} <= set(table.phase) <= {"method", "precompute", "base_validation"}
        method = table[table.phase == "method"]
        assert (method.forward > 0).all()
        assert (table[table.phase == "base_validation"].backward == 0).all()
        if info["method"] == "slug":  # its gradient passes, which with the base validation make its floor
            precompute = table[table.phase == "precompute"]
            assert len(precompute) == 2 and (precompute.backward > 0).all()
            assert (method.backward == 0).all()  # the search only evaluates
        else:
            assert (method.backward > 0).all()


def test_bench_costs_projects_each_unit_with_the_timed_components(clip_run, monkeypatch, capsys):
    calls = []

    def fake_timer(device, dtype, repeats):
        calls.append(device)
        return {"image_encoder": PassTime(0.01, 0.03, 8), "text_encoder": PassTime(0.002, 0.004, 8)}

    monkeypatch.setitem(real_scale.TIMERS, "clip", fake_timer)
    assert main(["costs", str(clip_run.run_dir), "--real-scale", "--device", "cpu"]) == 0
    assert main(["costs", str(clip_run.run_dir), "--real-scale", "--device", "cpu"]) == 0
    assert len(calls) == 1  # the second projection read the cached times
    out = capsys.readouterr().out
    assert "image_encoder" in out and "x_slug" in out
    passes = pd.read_csv(clip_run.run_dir / "costs.csv")
    for method, group in passes.groupby("method"):
        expected = sum(r.real_forward * t.forward_s + r.real_backward * t.backward_s
                       for r in group.itertuples() for t in [fake_timer("cpu", None, 1)[r.component]])
        assert group.seconds.sum() == pytest.approx(expected)
        without = group[group.phase != "base_validation"].seconds.sum()
        assert 0 < without < expected
        line = next(line for line in out.splitlines() if line.startswith(method))
        assert f"{expected:,.1f}" in line and f"{without:,.1f}" in line
        if method == "slug":  # runtime_over_floor at real scale: all passes over precompute + base validation
            floor = group[group.phase.isin(["precompute", "base_validation"])].seconds.sum()
            assert 0 < floor < expected and line.rstrip().endswith(f"{expected / floor:.2f}")
    assert "real_scale_s" in (clip_run.run_dir / "costs.md").read_text()


def test_bench_costs_without_projection_and_bad_input(clip_run, tmp_path, capsys):
    assert main(["costs", str(clip_run.run_dir)]) == 0
    assert "real_scale_s" not in capsys.readouterr().out
    assert main(["costs", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["costs", str(clip_run.run_dir), "--real-scale", "--dtype", "float7"]) == 2
    assert "unknown dtype" in capsys.readouterr().err


@pytest.mark.slow
def test_real_clip_components_time_forward_and_backward():
    times = real_scale.time_clip(torch.device("cpu"), torch.float32, repeats=1)
    assert set(times) == {"image_encoder", "text_encoder"}
    assert all(t.forward_s > 0 and t.backward_s > 0 for t in times.values())
    json.dumps({c: vars(t) for c, t in times.items()})  # what the cache stores


def test_esd_counts_its_partial_samples_at_the_reference_schedule(canvas_suite):
    """On the task's shortened schedule each partial-sampling step counts as 50 / steps reference steps; the
    frozen and trained models' passes count as they ran."""
    import dataclasses

    from unlearnbench.methods.base import build_method

    task = canvas_suite.task(canvas_suite.targets()[0])
    steps = task.extras["partial_sampling_steps"]
    assert steps < 50
    fixed = lambda m, changed: {"target_acc": 100.0, "IRA": 100.0}  # noqa: E731 - no generation in this count
    task = dataclasses.replace(task, validate_fn=fixed, validate_forget_fn=fixed)
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    try:
        torch.manual_seed(0)
        with PassCounter(model_components(task.model)).counting() as counter:
            outcome = build_method("esd-x", {"iterations": "4", "stop_on_goal": "false"}).unlearn(task)
    finally:
        task.model.load_state_dict(base)
    sampling = int(2 * outcome.tables["iterations"].stop_step.sum())
    unet = counts(counter, "unet")
    assert unet["forward"] == sampling + 3 * 4
    assert unet["real_forward"] == pytest.approx(sampling * 50 / steps + 3 * 4)
    assert unet["backward"] == unet["real_backward"] == 4

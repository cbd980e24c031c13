"""Result identity: a stored unit is reused only when everything that determines its numbers is
unchanged (code, model weights, settings, target, seed), and never silently otherwise."""

import importlib
import json
import logging
import sys
from dataclasses import replace

import pandas as pd
import pytest
import torch

from unlearnbench import records as rec
from unlearnbench.benchmarks.clip import ClipSuite
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.identity import code_fingerprint, model_fingerprint
from unlearnbench.methods.base import METHODS, build_method
from unlearnbench.reports.tables import MISSED, summary_table
from unlearnbench.runner import RunSpec, base_evaluation, run, run_lock, unit_name

PLUGIN = '''
"""A test plugin: gradient ascent on the image projection for a fixed number of steps."""
from dataclasses import dataclass

import torch

from unlearnbench.methods.base import Method, Outcome, register_method


@dataclass(frozen=True)
class AscentConfig:
    steps: int = 2  # gradient steps


@register_method("ascent-plugin")
class Ascent(Method):
    """Sign-gradient ascent on visual.proj (a test plugin)."""

    Config = AscentConfig
    kinds = frozenset({"clip"})

    def unlearn(self, task):
        weight = dict(task.model.named_parameters())["visual.proj"]
        with task.costs.phase("update"):
            for _, batch in zip(range(self.config.steps), task.forget_batches()):
                loss = task.forget_loss(task.model, batch)
                (grad,) = torch.autograd.grad(loss, [weight])
                with torch.no_grad():
                    weight.add_(SCALE * grad.sign())
                task.costs.count(backward=len(batch[0]))
        return Outcome()


SCALE = 0.01
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin method in a file of its own, registered for this test only."""
    source = tmp_path / "ub_test_plugin.py"
    source.write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(METHODS._entries, "ascent-plugin", raising=False)
    sys.modules.pop("ub_test_plugin", None)
    importlib.import_module("ub_test_plugin")
    yield source
    METHODS._entries.pop("ascent-plugin", None)
    sys.modules.pop("ub_test_plugin", None)


def test_editing_a_method_recomputes_its_units_only(micro_suite, plugin, tmp_path):
    spec = RunSpec(suite="clip", methods=["ascent-plugin", "noop"], out_dir=tmp_path / "runs", run_id="edit")
    first = run(spec, micro_suite)
    assert (first.reused, first.units) == (0, 2)

    plugin.write_text(plugin.read_text().replace("SCALE = 0.01\n", "SCALE = 0.01  # a comment changes nothing\n"))
    assert run(spec, micro_suite).reused == 2

    plugin.write_text(plugin.read_text().replace("SCALE = 0.01", "SCALE = 0.02"))
    again = run(spec, micro_suite)
    assert again.reused == 1
    assert again.reuse_line().startswith("reused 1 of 2 units; recomputed 1")
    assert "code of ascent-plugin" in again.reuse_line()
    units = again.manifest["units"]
    plugin_unit = next(u for u in units.values() if u["method"] == "ascent-plugin")
    noop_unit = next(u for u in units.values() if u["method"] == "noop")
    assert not plugin_unit["reused"] and noop_unit["reused"]
    assert plugin_unit["code_fingerprint"] != first.manifest["units"][next(
        k for k, u in first.manifest["units"].items() if u["method"] == "ascent-plugin")]["code_fingerprint"]


def test_code_fingerprint_follows_imports_not_reports():
    from unlearnbench.benchmarks.clip import ClipSuite as Clip
    from unlearnbench.identity import module_closure

    slug_cls, ga_cls = METHODS.get("slug"), METHODS.get("ga")
    closure = module_closure({"unlearnbench.runner", slug_cls.__module__, Clip.__module__})
    assert {"unlearnbench.methods.slug", "unlearnbench.benchmarks.clip", "unlearnbench.task",
            "unlearnbench.models.tiny_clip", "unlearnbench.methods.common"} <= set(closure)
    assert "unlearnbench.methods.ga" not in closure and not any(m.startswith("unlearnbench.reports") for m in closure)
    assert code_fingerprint(slug_cls, Clip) != code_fingerprint(ga_cls, Clip)
    assert code_fingerprint(slug_cls, Clip) == code_fingerprint(slug_cls, Clip)


def test_changed_suite_setting_with_a_fixed_run_id_is_recomputed(micro_suite, tmp_path):
    spec = RunSpec(suite="clip", methods=["slug"], method_overrides={"slug": {"search_steps": "3"}},
                   out_dir=tmp_path, run_id="fixed")
    run(spec, micro_suite)
    other = ClipSuite(replace(micro_suite.config, forget_metric="FA@1", retain_samples=64))
    changed = run(spec, other)
    assert changed.reused == 0 and "suite settings changed" in changed.reuse_line()
    assert changed.manifest["suite"]["config"]["forget_metric"] == "FA@1"
    fresh = run(replace(spec, out_dir=tmp_path / "fresh"), other)
    exact = ~changed.records.metric.str.contains("runtime|seconds|memory|floor")
    pd.testing.assert_frame_equal(changed.records[exact].drop(columns="run_id").reset_index(drop=True),
                                  fresh.records[exact].drop(columns="run_id").reset_index(drop=True))


def test_changed_method_setting_gets_its_own_unit(micro_suite, tmp_path):
    spec = RunSpec(suite="clip", methods=["slug"], method_overrides={"slug": {"search_steps": "3"}},
                   out_dir=tmp_path, run_id="fixed")
    run(spec, micro_suite)
    other = run(replace(spec, method_overrides={"slug": {"search_steps": "2"}}), micro_suite)
    assert other.reused == 0
    assert other.manifest["methods"]["slug"]["config"]["search_steps"] == 2
    assert set(other.records.config_hash) == {other.manifest["methods"]["slug"]["config_hash"]}


def test_unit_names_are_collision_free():
    noop = build_method("noop")
    names = {unit_name(t, noop, 0) for t in ("Anne O'Neil", "Anne O Neil", "Anne O_Neil", "anne o'neil")}
    assert len(names) == 4
    assert unit_name("Anne O'Neil", noop, 0) == unit_name("Anne O'Neil", noop, 0)
    assert unit_name("x" * 500, noop, 0).__len__() < 120


def test_model_fingerprint_is_content_not_name(micro_suite):
    model = micro_suite.base_model()
    before = model_fingerprint(model)
    weight = dict(model.named_parameters())["visual.proj"]
    with torch.no_grad():
        weight[0, 0] += 1e-3
    try:
        assert model_fingerprint(model) != before
    finally:
        with torch.no_grad():
            weight[0, 0] -= 1e-3
    assert model_fingerprint(model) == before


def test_base_evaluation_cache_is_keyed_by_weights_and_survives_corruption(micro_suite, monkeypatch, caplog):
    from unlearnbench.cache import cache_dir

    target = micro_suite.targets()[1]
    existing = set((cache_dir() / "evals").glob("*.json"))
    calls = []
    real = micro_suite.evaluate
    monkeypatch.setattr(micro_suite, "evaluate", lambda m, t: calls.append(t) or real(m, t))
    first = base_evaluation(micro_suite, target, "weights-a")
    assert base_evaluation(micro_suite, target, "weights-a") == first and len(calls) == 1
    base_evaluation(micro_suite, target, "weights-b")  # same model name, other weights: not reused
    assert len(calls) == 2
    for path in set((cache_dir() / "evals").glob("*.json")) - existing:
        path.write_text(path.read_text()[:5])
    with caplog.at_level(logging.WARNING):
        assert base_evaluation(micro_suite, target, "weights-a") == first
    assert "unreadable" in caplog.text and len(calls) == 3


def test_truncated_unit_or_artifact_is_recomputed_with_a_warning(micro_suite, tmp_path, caplog):
    spec = RunSpec(suite="clip", methods=["slug", "noop"], method_overrides={"slug": {"search_steps": "3"}},
                   out_dir=tmp_path, run_id="trunc")
    first = run(spec, micro_suite)
    unit = next((tmp_path / "trunc" / "units").glob("*noop*.parquet"))
    unit.write_bytes(unit.read_bytes()[:100])
    artifact = next((tmp_path / "trunc" / "artifacts").glob("*slug*__trace.parquet"))
    artifact.write_bytes(artifact.read_bytes()[:50])
    (tmp_path / "trunc" / "units" / ".leftover.parquet.abc.tmp").write_bytes(b"half")
    with caplog.at_level(logging.WARNING):
        again = run(spec, micro_suite)
    assert again.reused == 0
    assert caplog.text.count("unreadable") == 2 and unit.name in caplog.text
    assert not list((tmp_path / "trunc").rglob("*.tmp"))
    exact = ~first.records.metric.str.contains("runtime|seconds|memory|floor")
    pd.testing.assert_frame_equal(again.records[exact].reset_index(drop=True),
                                  first.records[exact].reset_index(drop=True))
    assert run(spec, micro_suite).reused == 2


def test_a_run_folder_in_use_is_refused(micro_suite, tmp_path):
    spec = RunSpec(suite="clip", methods=["noop"], out_dir=tmp_path, run_id="busy")
    with run_lock(tmp_path / "busy"):
        with pytest.raises(UnlearnBenchError, match="in use by another bench.py process"):
            run(spec, micro_suite)
    assert not (tmp_path / "busy" / "units").exists()
    assert run(spec, micro_suite).units == 1


def test_goal_status_is_recorded_and_marked(micro_suite, tmp_path):
    spec = RunSpec(suite="clip", methods=["slug", "noop"],
                   method_overrides={"slug": {"search_steps": "4", "max_front_layers": "2"}}, out_dir=tmp_path)
    result = run(spec, micro_suite)
    after = result.records[result.records.stage == "after"].pivot_table(index="method", columns="metric",
                                                                         values="value")
    assert after.loc["slug", "goal_met"] == 1 and after.loc["noop", "goal_met"] == 0
    assert after.loc["slug", "val_forget"] <= micro_suite.config.forget_threshold
    assert after.loc["noop", "val_forget"] > micro_suite.config.forget_threshold
    table = summary_table(result.records, ["FA@1", "goal_met"])
    assert list(table.index) == ["original", "slug", f"noop{MISSED}"]
    assert table.loc["slug", "goal_met"] == "1/1" and table.loc[f"noop{MISSED}", "goal_met"] == "0/1"
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["metrics"]["FA@1"]["higher_is_better"] is False
    assert manifest["metrics"]["goal_met"]["tolerance"] == 0
    assert all(u["goal"]["forget_metric"] == micro_suite.config.forget_metric for u in manifest["units"].values())
    stored = rec.read_metadata(next((result.run_dir / "units").glob("*slug*.parquet")))
    assert stored["identity"]["method_config"]["search_steps"] == 4
    assert stored["identity"]["model_fingerprint"] == manifest["suite"]["model_fingerprint"]


HELPER_PLUGIN = '''
"""A test plugin whose step size lives in a helper module beside it (outside the package)."""
from dataclasses import dataclass

import torch

from ub_test_helper import scale
from unlearnbench.methods.base import Method, Outcome, register_method


@dataclass(frozen=True)
class NudgeConfig:
    steps: int = 1  # gradient steps


@register_method("nudge-plugin")
class Nudge(Method):
    """Sign-gradient ascent on visual.proj with the helper's step (a test plugin)."""

    Config = NudgeConfig
    kinds = frozenset({"clip"})

    def unlearn(self, task):
        weight = dict(task.model.named_parameters())["visual.proj"]
        with task.costs.phase("update"):
            for _, batch in zip(range(self.config.steps), task.forget_batches()):
                (grad,) = torch.autograd.grad(task.forget_loss(task.model, batch), [weight])
                with torch.no_grad():
                    weight.add_(scale() * grad.sign())
                task.costs.count(backward=len(batch[0]))
        return Outcome()
'''


def test_editing_a_plugins_helper_module_recomputes_its_units(micro_suite, tmp_path, monkeypatch):
    (tmp_path / "ub_test_nudge.py").write_text(HELPER_PLUGIN)
    helper = tmp_path / "ub_test_helper.py"
    helper.write_text("def scale():\n    return 0.01\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_entries", {k: v for k, v in METHODS._entries.items() if k != "nudge-plugin"})
    for name in ("ub_test_nudge", "ub_test_helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.import_module("ub_test_nudge")
    spec = RunSpec(suite="clip", methods=["nudge-plugin", "noop"], out_dir=tmp_path / "runs", run_id="helper")
    assert run(spec, micro_suite).reused == 0

    helper.write_text("def scale():\n    return 0.02\n")  # the plugin's file is unchanged
    importlib.reload(sys.modules["ub_test_helper"])
    again = run(spec, micro_suite)
    assert again.reused == 1 and "code of nudge-plugin, its suite or the harness changed" in again.reuse_line()


def test_upgrading_a_library_recomputes_units_and_base_evaluations(micro_suite, tmp_path, monkeypatch):
    from unlearnbench import identity

    spec = RunSpec(suite="clip", methods=["noop"], out_dir=tmp_path, run_id="upgrade")
    first = run(spec, micro_suite)
    assert first.manifest["packages"]["open_clip_torch"] == identity.metadata.version("open_clip_torch")
    evaluations = []
    real_evaluate, real_version = micro_suite.evaluate, identity.metadata.version
    monkeypatch.setattr(micro_suite, "evaluate", lambda m, t: evaluations.append(t) or real_evaluate(m, t))
    assert run(spec, micro_suite).reused == 1 and evaluations == []
    monkeypatch.setattr(identity.metadata, "version", lambda dist: "99.0" if dist == "torch" else real_version(dist))
    upgraded = run(spec, micro_suite)
    assert upgraded.reused == 0
    assert f"library versions (torch {torch.__version__.split('+')[0]}" in upgraded.reuse_line()
    assert "-> 99.0)" in upgraded.reuse_line()
    assert len(evaluations) == 2  # the base model's test metrics too (cached under the old versions), and the unit's


def test_real_data_or_weights_replaced_in_place_recompute(tmp_path, capsys):
    """The same paths with other files behind them: units and base evaluations are recomputed, and why is said."""
    from fixtures_real import make_celeba_tree, make_imagenet_tree, tiny_jpeg

    from unlearnbench.cli import main
    from unlearnbench.models.tiny_clip import create_model

    root = tmp_path / "data"
    make_imagenet_tree(root / "imagenet", images_per_class=3)
    make_celeba_tree(root / "celeba")
    torch.manual_seed(0)
    weights = tmp_path / "model.pt"
    torch.save(create_model("ub-clip-bpe").state_dict(), weights)
    argv = ["--config", "real", "--data", str(root), "--weights", str(weights), "--set", "model=ub-clip-bpe",
            "--set", "batch_size=4", "--set", "retain_samples=16", "--methods", "noop", "--out", str(tmp_path / "runs"),
            "--run-id", "real"]
    assert main(argv) == 0
    assert main(argv) == 0 and "reused 1 of 1 units" in capsys.readouterr().out
    image = next((root / "celeba" / "img_align_celeba").glob("*.jpg"))
    image.write_bytes(tiny_jpeg((200, 40, 40)))  # replaced in place, same name
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reused 0 of 1 units" in out and "files read from data (replaced or modified) changed" in out
    unit = next((tmp_path / "runs" / "real" / "units").glob("*.parquet"))
    assert set(rec.read_metadata(unit)["identity"]["inputs"]) == {"data", "weights"}

    torch.manual_seed(1)
    torch.save(create_model("ub-clip-bpe").state_dict(), weights)  # other weights under the same file name
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reused 0 of 1 units" in out and "files read from weights (replaced or modified)" in out

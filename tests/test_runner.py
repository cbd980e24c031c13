"""The experiment loop end to end on the micro suite: records, resume, noop, patches, determinism."""

import json

import pandas as pd
import pytest

from unlearnbench.benchmarks.clip import ClipSuite
from unlearnbench import records as rec
from unlearnbench.methods.base import METHODS, Method, Outcome
from unlearnbench.runner import RunSpec, run

FAST_SLUG = {"slug": {"search_steps": "4", "max_front_layers": "2"}}


@pytest.fixture(scope="module")
def first_run(micro_suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    spec = RunSpec(suite="clip", methods=["slug", "noop"], method_overrides=FAST_SLUG, out_dir=out)
    return spec, run(spec, micro_suite)


def test_run_writes_records_and_manifest(first_run):
    _, result = first_run
    frame = rec.read(result.run_dir / "records.parquet")
    assert list(frame.columns) == list(rec.COLUMNS)
    assert set(frame.stage) == {"before", "after"}
    assert set(frame.method) == {"slug", "noop"}
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["suite"]["name"] == "clip" and manifest["suite"]["version"] == ClipSuite.version
    assert manifest["methods"]["slug"]["config"]["search_steps"] == 4
    assert "torch" in manifest["packages"] and "machine" in manifest


def test_noop_after_equals_before(first_run, micro_suite):
    _, result = first_run
    noop = result.records[result.records.method == "noop"]
    wide = noop.pivot_table(index="metric", columns="stage", values="value")
    evaluated = wide.dropna()
    assert len(evaluated) == len(micro_suite.metrics)
    assert (evaluated["before"] == evaluated["after"]).all()
    costs = noop[(noop.stage == "after")].set_index("metric").value
    assert costs["storage_bytes"] == 0 and costs["changed_tensors"] == 0


def test_slug_patch_is_one_tensor(first_run, micro_suite):
    _, result = first_run
    slug = result.records[(result.records.method == "slug") & (result.records.stage == "after")]
    costs = slug.set_index("metric").value
    layer = result.artifacts[next(k for k in result.artifacts if k.endswith("/layers"))].query("chosen").layer.iloc[0]
    weight = dict(micro_suite.base_model().named_parameters())[layer]
    assert costs["changed_tensors"] == 1
    assert costs["storage_bytes"] == weight.numel() * weight.element_size()
    assert costs["backward_samples"] > 0 and costs["runtime_s"] > 0


def test_base_model_is_restored_after_a_run(first_run, micro_suite):
    _, result = first_run
    target = micro_suite.targets()[0]
    before = result.records[(result.records.stage == "before")].groupby("metric").value.first()
    now = micro_suite.evaluate(micro_suite.base_model(), target)
    for metric, value in now.items():
        assert value == before[metric]


def test_rerun_resumes_finished_units(first_run, micro_suite, monkeypatch):
    spec, result = first_run
    calls = []
    for name in ("slug", "noop"):
        monkeypatch.setattr(METHODS.get(name), "unlearn", lambda self, task: calls.append(1) or Outcome())
    again = run(spec, micro_suite)
    assert calls == []
    assert again.run_dir == result.run_dir
    pd.testing.assert_frame_equal(again.records, result.records)


def test_same_seed_gives_identical_records(first_run, micro_suite, tmp_path):
    spec, result = first_run
    fresh = run(RunSpec(**{**spec.__dict__, "out_dir": tmp_path}), micro_suite)
    timing = fresh.records.metric.str.contains("runtime|seconds|memory|floor")
    old_timing = result.records.metric.str.contains("runtime|seconds|memory|floor")
    pd.testing.assert_frame_equal(fresh.records[~timing].reset_index(drop=True),
                                  result.records[~old_timing].reset_index(drop=True))


def test_failing_method_keeps_earlier_units(micro_suite, tmp_path, monkeypatch):
    class Exploding(Method):
        """Raises half-way through unlearning."""

        Config = METHODS.get("noop").Config
        kinds = frozenset({"clip"})

        def unlearn(self, task):
            with __import__("torch").no_grad():
                next(task.model.parameters()).mul_(float("nan"))
            return Outcome()

    monkeypatch.setitem(METHODS._entries, "exploding", Exploding)
    Exploding.name = "exploding"
    spec = RunSpec(suite="clip", methods=["noop", "exploding"], out_dir=tmp_path)
    with pytest.raises(Exception, match="non-finite weights"):
        run(spec, micro_suite)
    units = list(tmp_path.glob("*/units/*.parquet"))
    assert len(units) == 1 and "noop" in units[0].name
    # ... and the model was restored despite the failure
    assert all(p.isfinite().all() for p in micro_suite.base_model().parameters())


def test_units_record_what_other_processes_took_of_the_cpus(first_run):
    _, result = first_run
    shares = [info["other_cpu_percent"] for info in result.manifest["units"].values()]
    assert shares and all(0 <= share <= 100 for share in shares)


def test_other_load_sees_a_busy_process_beside_it():
    """Beside a process spinning on one core, other processes took a share of the CPUs this one may use
    (half of two cores here; a quarter of four); alone, a larger one of nothing."""
    import subprocess
    import sys
    import time

    from unlearnbench.costs import OtherLoad

    def work() -> float:
        with OtherLoad() as load:
            sum(i * i for i in range(3_000_000))
        return load.percent

    alone = work()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        beside = work()
    finally:
        spinner.kill()
        spinner.wait()
    cpus = len(OtherLoad()._cpus)
    assert beside >= alone + 50 / cpus, (alone, beside)


def test_run_report_marks_timings_taken_beside_other_work(first_run, tmp_path):
    import dataclasses
    import shutil

    from unlearnbench.reports.run_report import write_run_report

    _, result = first_run
    folder = tmp_path / "run"
    shutil.copytree(result.run_dir, folder)
    units = {name: {**info, "other_cpu_percent": 80.0 if i == 0 else 0.0}
             for i, (name, info) in enumerate(result.manifest["units"].items())}
    loaded = dataclasses.replace(result, run_dir=folder, manifest={**result.manifest, "units": units})
    report = write_run_report(loaded, ClipSuite)
    sentence = f"1 of {len(units)} units were timed while other processes used 25% or more of the CPUs (up to 80%)"
    assert sentence in report.terminal
    assert sentence in (folder / "table.md").read_text()
    assert "other processes used" in (folder / "report.html").read_text()
    quiet = {name: {**info, "other_cpu_percent": 0.0} for name, info in units.items()}
    alone = write_run_report(dataclasses.replace(loaded, manifest={**result.manifest, "units": quiet}), ClipSuite)
    assert "other processes used" not in alone.terminal + (folder / "table.md").read_text()


def test_manifest_and_report_show_the_resolved_value_of_settings_left_at_none(micro_suite, tmp_path):
    """ga's lr and the suite's reference_lr default to none; what ran was the suite's reference lr, and that is what
    the manifest and the report show (the config hash stays the hash of the settings as given)."""
    from unlearnbench.reports.run_report import write_run_report

    spec = RunSpec(suite="clip", methods=["ga", "noop"], method_overrides={"ga": {"epochs": "1"}}, out_dir=tmp_path)
    result = run(spec, micro_suite)
    lr = micro_suite.reference_lr()
    assert lr == 1e-4 and micro_suite.config.reference_lr is None
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    ga = manifest["methods"]["ga"]
    assert ga["config"]["lr"] == lr and ga["resolved"] == ["lr"]
    assert ga["config_hash"] == result.records[result.records.method == "ga"].config_hash.iloc[0]
    assert manifest["suite"]["config"]["reference_lr"] == lr and manifest["suite"]["resolved"] == ["reference_lr"]
    assert manifest["methods"]["noop"]["resolved"] == []
    write_run_report(result, ClipSuite)
    html = (result.run_dir / "report.html").read_text()
    assert "lr=0.0001" in html and "lr=none" not in html and "reference_lr: none" not in html


def test_an_ignored_virtual_environment_does_not_mark_a_run_dirty(tmp_path):
    """A clean clone with a .venv/ inside (where `pip install -e .` usually goes) is not -dirty; an edit is."""
    import subprocess
    from pathlib import Path

    from unlearnbench.runner import git_revision

    repo = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{repo}", str(clone)], check=True)
    (clone / ".venv" / "lib").mkdir(parents=True)
    (clone / ".venv" / "lib" / "site.py").write_text("x = 1\n")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    assert git_revision(clone / "unlearnbench") == head
    (clone / "README.md").write_text("edited\n")
    assert git_revision(clone / "unlearnbench") == f"{head}-dirty"

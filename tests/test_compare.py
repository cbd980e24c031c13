"""`bench.py compare`: per (method, config hash, metric) differences, directions from the manifest,
Welch's t-test, tolerances, and an exit status a CI job can gate on."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from unlearnbench import records as rec
from unlearnbench.cli import main
from unlearnbench.methods.base import METHODS, Outcome
from unlearnbench.records import Metric, make_records, metric_metadata
from unlearnbench.reports.compare import StoredRun, compare_runs
from unlearnbench.runner import RunSpec, run

METRICS = (Metric("FA", "forget-test", False), Metric("TA", "retain-test", True))


def stored_run(folder, values: dict[str, dict[str, list[float]]], configs=None):
    """A run folder with records (values[method][metric] = one value per target) and a manifest."""
    frames = []
    for method, metrics in values.items():
        for i in range(len(next(iter(metrics.values())))):
            keys = dict(run_id=folder.name, suite="toy", suite_version=1, model="m", target=f"t{i}", method=method,
                        config_hash=(configs or {}).get(method, "h0"), seed=0)
            frames.append(make_records({"FA": 90.0, "TA": 80.0}, stage="before", **keys))
            frames.append(make_records({k: v[i] for k, v in metrics.items()}, stage="after", **keys))
    rec.write(pd.concat(frames, ignore_index=True), folder / "records.parquet")
    manifest = {"suite": {"name": "toy", "config": {"batch_size": 32}, "model_fingerprint": "w"},
                "metrics": metric_metadata(METRICS),
                "methods": {m: {"config_hash": (configs or {}).get(m, "h0"), "config": {}} for m in values}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def runs(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "new").mkdir()
    base = stored_run(tmp_path / "base", {"slug": {"FA": [0, 0, 2], "TA": [80, 82, 81], "runtime_s": [1, 2, 3]},
                                          "ga": {"FA": [0, 0, 0], "TA": [70, 71, 72], "runtime_s": [5, 5, 5]}})
    new = stored_run(tmp_path / "new", {"slug": {"FA": [0, 3, 2], "TA": [79.5, 81.5, 80.5], "runtime_s": [9, 9, 9]},
                                        "ga": {"FA": [0, 0, 0], "TA": [60, 62, 61], "runtime_s": [5, 5, 5]}})
    return base, new


def test_differences_directions_and_welch(runs):
    result = compare_runs(StoredRun.load(runs[0], "BASE"), StoredRun.load(runs[1], "NEW"))
    row = result.set_index(["method", "metric"])
    assert row.loc[("ga", "TA"), "status"] == "regressed"  # higher is better, fell 10 points
    assert row.loc[("ga", "TA"), "diff"] == pytest.approx(-10.0)
    assert row.loc[("slug", "TA"), "status"] == "within tolerance"  # -0.5 within the default 1 point
    assert row.loc[("slug", "FA"), "status"] == "within tolerance"  # +1: lower is better, at the tolerance
    assert row.loc[("slug", "runtime_s"), "status"] == "not gated"
    assert row.loc[("original", "TA"), "status"] == "within tolerance"
    expected = stats.ttest_ind([60, 62, 61], [70, 71, 72], equal_var=False).pvalue
    assert row.loc[("ga", "TA"), "p_value"] == pytest.approx(expected)
    assert np.isnan(row.loc[("ga", "FA"), "p_value"])  # identical constant values: no test


def test_tolerances_override_defaults(runs):
    base, new = StoredRun.load(runs[0], "BASE"), StoredRun.load(runs[1], "NEW")
    row = compare_runs(base, new, {"TA": 20.0, "FA": 0.5, "runtime_s": 1.0}).set_index(["method", "metric"])
    assert row.loc[("ga", "TA"), "status"] == "within tolerance"
    assert row.loc[("slug", "FA"), "status"] == "regressed"
    assert row.loc[("slug", "runtime_s"), "status"] == "regressed"


def test_cli_gate_and_compare_md(runs, capsys):
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0  # reports without gating
    assert main(["compare", str(runs[0]), str(runs[1]), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED 1 of" in out and "ga TA 71.00 -> 61.00" in out
    assert "runtime_s" in (runs[1] / "compare.md").read_text()
    assert main(["compare", str(runs[0]), str(runs[0] / "records.parquet"), "--fail-on-regression"]) == 0
    assert main(["compare", str(runs[0]), str(runs[1]), "--fail-on-regression", "--tolerance", "TA=15"]) == 0


def test_variants_are_matched_by_config_hash(tmp_path, capsys):
    for name in ("base", "new"):
        (tmp_path / name).mkdir()
    stored_run(tmp_path / "base", {"slug": {"FA": [0], "TA": [80]}}, configs={"slug": "aaa"})
    stored_run(tmp_path / "new", {"slug": {"FA": [0], "TA": [10]}, "ga": {"FA": [0], "TA": [1]}},
               configs={"slug": "bbb"})
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), "--fail-on-regression"])
    assert code == 0  # only the base model's rows are shared; the other variants are listed, not compared
    out = capsys.readouterr().out
    assert "only in BASE: slug (aaa)" in out and "only in NEW: slug (bbb)" in out and "only in NEW: ga" in out


@pytest.mark.parametrize("argv, message", [
    (["nowhere", "nowhere2"], "no such run folder or records file"),
    (["{base}", "{new}", "--tolerance", "TA=lots"], "give a number of points"),
    (["{base}", "{new}", "--tolerance", "TA=-1"], "cannot be negative"),
    (["{base}", "{new}", "--tolerance", "XYZ=1"], "neither run has: XYZ"),
])
def test_bad_compare_input(runs, capsys, tmp_path, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(base=runs[0], new=runs[1]) for a in argv]
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_deliberately_broken_method_fails_the_gate(micro_suite, tmp_path, monkeypatch, capsys):
    """Two real runs: the same noop twice passes; a noop whose code now damages the image tower fails,
    and the failing metric is named."""
    spec = RunSpec(suite="clip", methods=["noop"], out_dir=tmp_path)
    good = run(RunSpec(**{**spec.__dict__, "run_id": "good"}), micro_suite)
    same = run(RunSpec(**{**spec.__dict__, "run_id": "same"}), micro_suite)
    assert main(["compare", str(good.run_dir), str(same.run_dir), "--fail-on-regression"]) == 0

    def broken(self, task):
        with torch.no_grad():
            dict(task.model.named_parameters())["visual.proj"].mul_(-1)
        return Outcome()

    monkeypatch.setattr(METHODS.get("noop"), "unlearn", broken)
    bad = run(RunSpec(**{**spec.__dict__, "run_id": "bad"}), micro_suite)
    capsys.readouterr()
    assert main(["compare", str(good.run_dir), str(bad.run_dir), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "noop TA_CA@1" in out


def test_runs_timed_beside_other_work_are_named(runs, capsys):
    """A unit timed while other processes took a quarter or more of the CPUs makes its run's runtimes
    doubtful: compare says which run, the run report says it under the table."""
    from unlearnbench.reports.tables import loaded_note

    manifest_file = runs[1] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["units"] = {"t0__slug": {"other_cpu_percent": 61.0}, "t1__slug": {"other_cpu_percent": 2.0}}
    manifest_file.write_text(json.dumps(manifest))
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0
    out = capsys.readouterr().out
    assert "NEW: 1 of 2 units were timed while other processes used 25% or more of the CPUs (up to 61%)" in out
    assert "BASE:" not in out  # its manifest records no load
    assert loaded_note({"a": {"other_cpu_percent": 24.9}}) == ""

"""`bench.py compare`: per (method, metric) differences over units paired by method name, target and seed,
directions from the package's metric declarations, Welch's t-test, tolerances, and an exit status a CI job can
gate on: regressions, NaN or missing values, units missing in NEW and changed settings fail it."""

import json
import math

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


def stored_run(folder, values: dict[str, dict[str, list[float]]], configs=None, settings=None, suite="toy",
               metrics=METRICS, seeds=(0,)):
    """A run folder with records (values[method][metric] = one value per target, for each seed) and a manifest;
    ``configs``: method -> config hash, ``settings``: method -> its settings."""
    folder.mkdir(exist_ok=True)
    frames = []
    for method, by_metric in values.items():
        for i in range(len(next(iter(by_metric.values())))):
            for seed in seeds:
                keys = dict(run_id=folder.name, suite=suite, suite_version=1, model="m", target=f"t{i}",
                            method=method, config_hash=(configs or {}).get(method, "h0"), seed=seed)
                frames.append(make_records({m.name: 50.0 for m in metrics}, stage="before", **keys))
                frames.append(make_records({k: v[i] for k, v in by_metric.items()}, stage="after", **keys))
    rec.write(pd.concat(frames, ignore_index=True), folder / "records.parquet")
    manifest = {"suite": {"name": suite, "config": {"batch_size": 32}, "model_fingerprint": "w"},
                "metrics": metric_metadata(metrics),
                "methods": {m: {"config_hash": (configs or {}).get(m, "h0"), "config": (settings or {}).get(m, {})}
                            for m in values}}
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


def test_a_settings_change_fails_the_gate_with_the_diff(tmp_path, capsys):
    """The issue's case: a plugin's lr went 0.05 -> 0.3 and TA fell; the runs' config hashes differ, yet the
    units are paired by method name, the settings diff is printed and fails the gate on its own."""
    base = stored_run(tmp_path / "base", {"sga": {"FA": [0], "TA": [59.72]}}, configs={"sga": "aaa"},
                      settings={"sga": {"lr": 0.05, "steps": 20}})
    new = stored_run(tmp_path / "new", {"sga": {"FA": [0], "TA": [29.17]}}, configs={"sga": "bbb"},
                     settings={"sga": {"lr": 0.3, "steps": 20}})
    assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: settings of sga changed: lr 0.05 -> 0.3; give --allow-config-change" in out
    assert "sga TA 59.72 -> 29.17" in out  # paired by name, the metrics are compared too

    assert main(["compare", str(base), str(new), "--fail-on-regression", "--allow-config-change"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED 1 of" in out and "sga TA 59.72 -> 29.17 (tolerance 1)" in out
    assert "settings of sga changed: lr 0.05 -> 0.3 (allowed: --allow-config-change)" in out and "FAIL:" not in out

    same = stored_run(tmp_path / "same", {"sga": {"FA": [0], "TA": [59.5]}}, configs={"sga": "bbb"},
                      settings={"sga": {"lr": 0.3, "steps": 20}})
    assert main(["compare", str(base), str(same), "--fail-on-regression", "--allow-config-change"]) == 0
    assert main(["compare", str(base), str(same), "--fail-on-regression"]) == 1  # the change alone fails

    # lr left at none in BASE's manifest (written before manifests showed resolved values), shown as the value it
    # resolved to in NEW's: the same setting, not a change
    given = stored_run(tmp_path / "given", {"sga": {"FA": [0], "TA": [59.5]}}, settings={"sga": {"lr": None}})
    resolved = stored_run(tmp_path / "resolved", {"sga": {"FA": [0], "TA": [59.5]}}, settings={"sga": {"lr": 0.05}})
    manifest = json.loads((resolved / "manifest.json").read_text())
    manifest["methods"]["sga"]["resolved"] = ["lr"]
    (resolved / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(given), str(resolved), "--fail-on-regression"]) == 0


def test_suite_settings_changes_fail_the_gate(runs, capsys):
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    manifest["suite"]["config"]["batch_size"] = 8
    (runs[1] / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(runs[0]), str(runs[1]), "--fail-on-regression", "--tolerance", "TA=15"]) == 1
    assert "FAIL: suite settings changed: batch_size 32 -> 8" in capsys.readouterr().out


def test_a_method_target_or_seed_missing_in_new_fails_the_gate(tmp_path, capsys):
    base = stored_run(tmp_path / "base", {"slug": {"FA": [0, 0], "TA": [80, 80]}, "ga": {"FA": [0, 0], "TA": [70, 70]}},
                      seeds=(0, 1))
    cases = {
        "method 'ga'": ({"slug": {"FA": [0, 0], "TA": [80, 80]}}, (0, 1), "method ga ran in BASE but not in NEW"),
        "target": ({"slug": {"FA": [0], "TA": [80]}, "ga": {"FA": [0], "TA": [70]}}, (0, 1),
                   "target 't1' ran in BASE but not in NEW"),
        "seed": ({"slug": {"FA": [0, 0], "TA": [80, 80]}, "ga": {"FA": [0, 0], "TA": [70, 70]}}, (0,),
                 "seed 1 ran in BASE but not in NEW"),
    }
    for name, (values, seeds, expected) in cases.items():
        new = stored_run(tmp_path / name.split()[0], values, seeds=seeds)
        assert main(["compare", str(base), str(new)]) == 0  # reported, gated only when asked
        assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 1, name
        out = capsys.readouterr().out
        assert f"FAIL: {expected}" in out and "no regression" not in out, out
    more = stored_run(tmp_path / "more", {"slug": {"FA": [0, 0], "TA": [80, 80]}, "ga": {"FA": [0, 0], "TA": [70, 70]},
                                          "ft": {"FA": [0, 0], "TA": [70, 70]}}, seeds=(0, 1))
    assert main(["compare", str(base), str(more), "--fail-on-regression"]) == 0  # more in NEW is fine
    assert "only in NEW (not compared): methods ft" in capsys.readouterr().out


def test_nan_or_missing_values_in_new_fail_the_gate(tmp_path, capsys):
    base = stored_run(tmp_path / "base", {"slug": {"FA": [0, 0], "TA": [80, 81], "runtime_s": [1, 1]}})
    nan = stored_run(tmp_path / "nan", {"slug": {"FA": [0, 0], "TA": [math.nan, math.nan], "runtime_s": [1, 1]}})
    assert main(["compare", str(base), str(nan), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "slug TA NaN or missing in NEW for 2 of 2 units where BASE had a number" in out
    gone = stored_run(tmp_path / "gone", {"slug": {"FA": [0, 0], "runtime_s": [1, 1]}})  # TA not recorded
    assert main(["compare", str(base), str(gone), "--fail-on-regression"]) == 1
    one = stored_run(tmp_path / "one", {"slug": {"FA": [0, 0], "TA": [80, math.nan], "runtime_s": [1, 1]}})
    row = compare_runs(StoredRun.load(base, "BASE"), StoredRun.load(one, "NEW")).set_index(["method", "metric"])
    assert row.loc[("slug", "TA"), "status"] == "missing in NEW" and row.loc[("slug", "TA"), "n_missing"] == 1
    # NaN on both sides (MIA with too few forget pairs) has nothing to compare, and fails nothing
    both = stored_run(tmp_path / "both", {"slug": {"FA": [0, 0], "TA": [math.nan, 80], "runtime_s": [2, 2]}})
    again = stored_run(tmp_path / "again", {"slug": {"FA": [0, 0], "TA": [math.nan, 79.5], "runtime_s": [2, 2]}})
    assert main(["compare", str(both), str(again), "--fail-on-regression"]) == 0
    no_runtime = stored_run(tmp_path / "none", {"slug": {"FA": [0, 0], "TA": [80, 81]}})
    assert main(["compare", str(base), str(no_runtime), "--fail-on-regression"]) == 0  # runtime_s is not gated


def test_directions_come_from_the_package_not_from_the_manifests(tmp_path, capsys):
    """A hand-edited NEW manifest that calls TA_IN@1 lower-is-better does not turn its fall into an improvement."""
    from unlearnbench.benchmarks.clip import ClipSuite

    metrics = tuple(m for m in ClipSuite.metrics if m.name in ("FA@1", "TA_IN@1"))
    base = stored_run(tmp_path / "base", {"slug": {"FA@1": [0], "TA_IN@1": [59.72]}}, suite="clip", metrics=metrics)
    new = stored_run(tmp_path / "new", {"slug": {"FA@1": [0], "TA_IN@1": [29.17]}}, suite="clip", metrics=metrics)
    manifest = json.loads((new / "manifest.json").read_text())
    manifest["metrics"]["TA_IN@1"].update(higher_is_better=False, tolerance=100.0)
    (new / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(base), str(new), "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "slug TA_IN@1 59.72 -> 29.17 (tolerance 1)" in out
    assert ("NEW's manifest says TA_IN@1: lower is better, tolerance 100; compared as the package declares: "
            "higher is better, tolerance 1") in out


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

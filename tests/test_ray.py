"""``--executor ray``: units as Ray tasks on a local 2-CPU cluster give the records, unit files, artifacts
and patches of a sequential run, resume like one, and a missing Ray is one clear line before any work."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch

from unlearnbench import cli
from unlearnbench import records as rec
from unlearnbench.patch import Patch
from unlearnbench.runner import RunSpec, run

# The micro suite of conftest.MICRO as --set settings: a Ray worker rebuilds the suite from them.
MICRO_SETTINGS = {"embedded": "micro", "retain_samples": "128", "batch_size": "32", "forget_metric": "FA@1"}
FAST_SLUG = {"slug": {"search_steps": "4", "max_front_layers": "2"}, "ga": {"epochs": "2"}}
# Metrics that differ from run to run: wall times (runtime_*, eval_seconds, floor_s, runtime_over_floor), memory.
TIMING = r"runtime|seconds|memory|floor|_s$"
FOLDERS = ("units", "artifacts", "patches", "samples", "answers")


def comparable(records: pd.DataFrame) -> pd.DataFrame:
    """Records without timing and memory rows and without the run id."""
    keep = ~records.metric.str.contains(TIMING)
    return records[keep].drop(columns="run_id").reset_index(drop=True)


def files(run_dir) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for folder in FOLDERS
            for p in sorted((run_dir / folder).glob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(micro_suite, tmp_path_factory):
    """The same spec run sequentially and on Ray (a local cluster the executor starts on 2 CPUs)."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    out = tmp_path_factory.mktemp("runs")
    spec = RunSpec(suite="clip", methods=["slug", "ga", "noop"], suite_overrides=MICRO_SETTINGS,
                   method_overrides=FAST_SLUG, targets="2", out_dir=out / "sequential")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task (1 CPU) runs: float sums then add up in the same order
    try:
        sequential = run(spec, micro_suite)
    finally:
        torch.set_num_threads(threads)
    mp = pytest.MonkeyPatch()
    mp.setattr("os.cpu_count", lambda: 2)  # the local cluster the executor starts: 2 CPUs, 2 units at once
    try:
        ray_spec = RunSpec(**{**spec.__dict__, "out_dir": out / "ray", "executor": "ray"})
        on_ray = run(ray_spec, micro_suite)
    finally:
        mp.undo()
    return spec, ray_spec, sequential, on_ray


@pytest.mark.slow
def test_ray_run_equals_sequential_run(runs):
    _, _, sequential, on_ray = runs
    assert on_ray.units == sequential.units == 6 and on_ray.reused == 0
    assert on_ray.run_dir.name == sequential.run_dir.name  # the same command, the same run id
    pd.testing.assert_frame_equal(comparable(on_ray.records), comparable(sequential.records))
    stored = rec.read(on_ray.run_dir / "records.parquet")
    pd.testing.assert_frame_equal(comparable(stored), comparable(sequential.records))
    assert list(on_ray.manifest["units"]) == list(sequential.manifest["units"])  # in (target, method, seed) order
    assert on_ray.manifest["executor"] == "ray"
    ours, theirs = files(on_ray.run_dir), files(sequential.run_dir)
    assert sorted(ours) == sorted(theirs)
    assert any(name.startswith("patches/") for name in ours)
    for name in ours:
        if name.startswith("patches/"):  # the same tensors and metadata (safetensors orders metadata keys at random)
            mine, other = Patch.load(on_ray.run_dir / name), Patch.load(sequential.run_dir / name)
            assert mine.metadata == other.metadata, name
            assert mine.tensors.keys() == other.tensors.keys(), name
            assert all(torch.equal(mine.tensors[k], other.tensors[k]) for k in mine.tensors), name
        elif not name.startswith(("units/", "artifacts/")):  # sample grids and answers (other suites)
            assert ours[name] == theirs[name], name
    for name, table in sequential.artifacts.items():
        pd.testing.assert_frame_equal(on_ray.artifacts[name].drop(columns=["seconds"], errors="ignore"),
                                      table.drop(columns=["seconds"], errors="ignore"))


@pytest.mark.slow
def test_ray_rerun_reuses_every_unit_and_resumes_a_missing_one(runs, micro_suite, monkeypatch):
    _, ray_spec, sequential, on_ray = runs
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    again = run(ray_spec, micro_suite)
    assert again.reused == again.units == 6
    pd.testing.assert_frame_equal(again.records, on_ray.records)
    # An interrupted run: one unit's file is missing; the rerun computes that unit alone.
    missing = sorted((on_ray.run_dir / "units").glob("*ga-*.parquet"))[0]
    missing.unlink()
    resumed = run(ray_spec, micro_suite)
    assert resumed.reused == 5 and missing.is_file()
    pd.testing.assert_frame_equal(comparable(resumed.records), comparable(sequential.records))


def test_executor_ray_without_ray_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    built = []
    monkeypatch.setattr("unlearnbench.runner.prepare", lambda *a, **k: built.append(1))
    code = cli.main(["--methods", "noop", "--executor", "ray", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and built == []
    assert err == 'error: --executor ray needs Ray: pip install -e ".[ray]"'
    assert not any(tmp_path.iterdir())


def test_address_needs_executor_ray(capsys, tmp_path):
    assert cli.main(["--methods", "noop", "--address", "auto", "--out", str(tmp_path)]) == 2
    assert "--address" in capsys.readouterr().err

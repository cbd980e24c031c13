"""Slow: the README's main command of each suite, on the shipped embedded models with an empty cache, gives
the records stored in tests/golden/ within ``bench.py compare``'s tolerances, on one torch thread and on two.

A changed number is then a reviewed event: regenerate the records with ``python tests/test_golden.py`` (one
thread, the shipped models) in the same commit as the change that moved them, and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
# The README's main command of each suite.
COMMANDS = {
    "clip": ["--suite", "clip", "--methods", "slug,noop"],
    "llava": ["--suite", "llava", "--methods", "slug,slug-lm,ga"],
    "unlearncanvas": ["--suite", "unlearncanvas", "--methods", "slug,salun"],
}


def run_readme_command(suite: str, threads: int, folder: Path) -> Path:
    """Run ``suite``'s README command on ``threads`` torch threads with an empty cache; returns the run folder."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "UNLEARNBENCH_CACHE": str(folder / "cache")}
    subprocess.run([sys.executable, "bench.py", *COMMANDS[suite], "--out", str(folder / "runs"), "--run-id", suite],
                   cwd=ROOT, env=env, check=True)
    return folder / "runs" / suite


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("suite", sorted(COMMANDS))
def test_readme_command_reproduces_the_golden_records(suite, threads, tmp_path):
    from unlearnbench.reports.compare import StoredRun, compare

    run = run_readme_command(suite, threads, tmp_path)
    comparison = compare(StoredRun.load(GOLDEN / suite, "golden"), StoredRun.load(run, "new"))
    result = comparison.rows
    gated = result[result.status != "not gated"]
    assert len(gated) >= 4, "the golden run and this one share too few gated metrics"
    assert not comparison.failures, comparison.failures  # a unit missing, or settings changed
    moved = result[result.status.isin(["regressed", "improved", "missing in NEW"])]
    shown = moved[["variant", "metric", "base", "new", "tolerance"]]
    assert moved.empty, f"moved beyond tolerance or missing:\n{shown.to_string()}"


def regenerate() -> None:
    """Rewrite tests/golden/<suite>/ (records.parquet and manifest.json) from one-thread runs."""
    for suite in COMMANDS:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_readme_command(suite, 1, Path(tmp))
            target = GOLDEN / suite
            target.mkdir(parents=True, exist_ok=True)
            for name in ("records.parquet", "manifest.json"):
                shutil.copy2(run / name, target / name)
        print(f"wrote {target}")


if __name__ == "__main__":
    regenerate()

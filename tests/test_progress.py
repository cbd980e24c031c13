"""Progress on stderr: one bar over a run's units with an ETA where a person watches a terminal; no bar
at all where stderr is a file or a pipe (logs, CI)."""

import pytest

from unlearnbench import progress
from unlearnbench.runner import RunSpec, run


@pytest.fixture
def spec(tmp_path):
    return RunSpec(suite="clip", methods=["ga", "noop"], method_overrides={"ga": {"epochs": "1"}}, out_dir=tmp_path,
                   run_id="progress")


def test_a_terminal_gets_one_bar_over_the_units_with_an_eta(micro_suite, spec, capsys, monkeypatch):
    monkeypatch.setattr(progress, "enabled", lambda: True)
    run(spec, micro_suite)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").splitlines()
    units = [line for line in final if line.startswith("units (sequential)")]
    assert units and "2/2" in units[-1] and "<" in units[-1]  # [elapsed<remaining]
    assert any("ga on Ulrike Kingsley, seed 0" in line for line in units)  # what runs now
    assert any("evaluating the base model on Ulrike Kingsley" in line for line in units)
    again = run(spec, micro_suite)  # reused units count too
    assert again.reused == 2 and "2/2" in capsys.readouterr().err


def test_no_bar_where_stderr_is_not_a_terminal(micro_suite, spec, capsys):
    # pytest's captured stderr is no terminal, as a log file or CI's is not
    assert not progress.enabled()
    run(spec, micro_suite)
    err = capsys.readouterr().err
    assert "units (sequential)" not in err and "ga Ulrike Kingsley" not in err and "%|" not in err

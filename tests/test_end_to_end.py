"""Slow: the README's main commands on the full embedded defaults (the shipped models), checked against their bars."""

import pandas as pd
import pytest

from unlearnbench.cli import main
from unlearnbench.records import read


@pytest.mark.slow
def test_default_clip_run_meets_the_acceptance_bars(tmp_path, capsys):
    assert main(["--suite", "clip", "--methods", "slug,noop", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "identities" in out or "slug" in out
    records = read(next(tmp_path.glob("*/records.parquet")))
    values = records.pivot_table(index=["method", "stage"], columns="metric", values="value")
    before, slug = values.loc[("slug", "before")], values.loc[("slug", "after")]
    assert before["FA@1"] >= 80  # the default target, Ulrike Kingsley: 100% of its 20 held-out images
    assert slug["FA@1"] <= 5
    # On the shipped model SLUG's mean drops over the five paper targets were TA_CA@1 2.1 and TA_IN@1 1.5
    # points (default target: 1.0 and 0.6).
    assert slug["TA_CA@1"] >= before["TA_CA@1"] - 7
    assert slug["TA_IN@1"] >= before["TA_IN@1"] - 7
    assert slug["changed_tensors"] == 1
    noop = values.loc[("noop", "after")]
    for metric in ("FA@1", "FA@5", "TA_CA@1", "TA_CA@5", "TA_IN@1", "TA_IN@5"):
        assert noop[metric] == values.loc[("noop", "before")][metric]


@pytest.mark.slow
def test_default_llava_run_forgets_with_slug_lm(tmp_path):
    """The embedded llava default (the shipped tiny LLaVA): slug-lm takes the default target's FA from
    >= 95% to <= 30% with other identities and utility within 5 points (measured: 100 -> 25, other
    identities -0.6 points; 10 with retain_scoring=forgetting, which keeps a larger step of equal
    retention: docs/PROTOCOLS.md, SLUG's step choice)."""
    assert main(["--suite", "llava", "--methods", "slug-lm", "--out", str(tmp_path)]) == 0
    records = read(next(tmp_path.glob("*/records.parquet")))
    values = records.pivot_table(index=["method", "stage"], columns="metric", values="value")
    before, after = values.loc[("slug-lm", "before")], values.loc[("slug-lm", "after")]
    assert before["FA"] >= 95 and after["FA"] <= 30
    assert after["TA_ID"] >= before["TA_ID"] - 5
    assert after["TA_VQA"] >= before["TA_VQA"] - 5
    assert after["changed_tensors"] == 1
    assert len(pd.read_parquet(next(tmp_path.glob("*/answers/*.parquet")))) > 3  # example answers written

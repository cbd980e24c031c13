"""``bench.py paper claims``: each claim's check on hand-made records (reproduced, and not reproduced with why),
and the command's own input checks. The command itself runs in the slow step (tests/test_end_to_end.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from unlearnbench.reports.claims import CLAIM_RUNS, CLAIMS, claims_table, evidence_from


def records(suite: str, before: dict[str, float], after: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Long records of one target: the base model's values and each method's."""
    rows = [{"method": m, "target": "t", "seed": 0, "stage": "before", "metric": k, "value": v}
            for m in after for k, v in before.items()]
    rows += [{"method": m, "target": "t", "seed": 0, "stage": "after", "metric": k, "value": v}
             for m, values in after.items() for k, v in values.items()]
    return pd.DataFrame(rows).assign(suite=suite)


def paper_like() -> dict[str, pd.DataFrame]:
    """Records shaped like the paper's findings: every claim holds."""
    clip = records("clip", {"FA@1": 70.0, "TA_IN@1": 60.0, "TA_CA@1": 60.0},
                   {"slug": {"FA@1": 0.0, "TA_IN@1": 59.0, "TA_CA@1": 58.0},
                    "ga": {"FA@1": 0.0, "TA_IN@1": 36.0, "TA_CA@1": 25.0},
                    "salun-ga": {"FA@1": 0.0, "TA_IN@1": 55.0, "TA_CA@1": 26.0},
                    "ssd-slug": {"FA@1": 10.0, "TA_IN@1": 62.0, "TA_CA@1": 61.0}})  # keeps more but did not forget
    canvas = records("unlearncanvas", {"UA": 0.0, "IRA": 100.0, "CRA": 100.0},
                     {"slug": {"UA": 86.0, "IRA": 85.0, "CRA": 88.0, "runtime_s": 3.0, "storage_bytes": 16e3},
                      "salun": {"UA": 88.0, "IRA": 90.0, "CRA": 95.0, "runtime_s": 60.0, "storage_bytes": 4e6}})
    llava = records("llava", {"FA": 99.5, "TA_ID": 99.0, "TA_VQA": 99.7},
                    {"slug": {"FA": 2.0, "TA_ID": 90.0, "TA_VQA": 97.0}})
    return {"clip": clip, "unlearncanvas": canvas, "llava": llava}


def verdicts(tables: dict[str, pd.DataFrame], projected: dict[str, pd.Series]) -> pd.DataFrame:
    return claims_table(evidence_from(tables, projected, "cpu")).set_index("claim")


def test_every_claim_is_reproduced_on_records_shaped_like_the_papers():
    table = verdicts(paper_like(), {"unlearncanvas": pd.Series({"slug": 40.0, "salun": 700.0})})
    assert len(table) == len(CLAIMS) and set(table.suite) == set(CLAIM_RUNS)
    assert (table.verdict == "reproduced").all(), table[["verdict", "why not"]]
    assert (table["why not"] == "").all()
    assert table["ours"].str.contains("salun / slug = 20.0x").any()  # the measured runtime ratio


def test_a_claim_the_records_contradict_is_kept_as_not_reproduced_with_why():
    tables = paper_like()
    canvas = tables["unlearncanvas"]
    canvas.loc[(canvas.method == "slug") & (canvas.metric == "UA") & (canvas.stage == "after"), "value"] = 60.0
    canvas.loc[(canvas.method == "slug") & (canvas.metric == "runtime_s"), "value"] = 30.0
    clip = tables["clip"]
    clip.loc[(clip.method == "ga") & (clip.metric == "TA_CA@1"), "value"] = 59.0  # ga keeps more than slug
    llava = tables["llava"]
    llava.loc[(llava.metric == "FA") & (llava.stage == "after"), "value"] = 12.0
    table = verdicts(tables, {})
    missed = table[table.verdict == "not reproduced"]
    why = dict(zip(missed.suite + ": " + missed.index, missed["why not"]))
    assert len(table) == len(CLAIMS)  # nothing dropped
    assert any("UA differs by 28.0 points" in w for w in why.values())
    assert any("measured runtimes only 2.0x apart" in w for w in why.values())
    assert any("the real-scale pass times could not be measured" in w for w in why.values())
    assert any("ga keeps more TA_CA@1" in w for w in why.values())
    assert any("FA after SLUG is 12.0, above 5" in w for w in why.values())
    assert (table.loc[table.suite == "unlearncanvas", "ours"].str.contains("salun / slug = 2.0x")).any()


@pytest.mark.parametrize("extra", [["--set", "forget_threshold=5"], ["--config", "real"], ["--run-id", "x"]])
def test_claims_take_the_embedded_defaults_only(extra, tmp_path, capsys):
    from unlearnbench.cli import main  # noqa: PLC0415

    assert main(["paper", "claims", "--out", str(tmp_path), *extra]) == 2
    assert "bench.py paper claims runs every suite's embedded default" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def markdown_rows(text: str, header: tuple[str, ...]) -> list[list[str]]:
    """The rows of the Markdown table whose header cells begin with ``header`` (padded or not)."""
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("|") and tuple(cells(line)[:len(header)]) == header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


@pytest.mark.slow
def test_paper_claims_runs_and_the_readme_shows_its_verdicts(tmp_path):
    """The command runs on the shipped models and the README's claims table has its verdicts (the measured
    runtime ratio is this machine's, so that one claim's verdict is not compared)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from test_golden import ROOT  # noqa: PLC0415

    subprocess.run([sys.executable, "bench.py", "paper", "claims", "--out", str(tmp_path)], cwd=ROOT, check=True)
    written = markdown_rows((tmp_path / "paper-claims" / "claims.md").read_text(), ("suite", "claim"))
    shown = markdown_rows((ROOT / "README.md").read_text(), ("suite", "claim"))
    assert [row[:2] for row in written] == [row[:2] for row in shown] and len(written) == len(CLAIMS)
    for new, readme in zip(written, shown):
        if "(measured here)" not in new[1]:
            assert new[4] == readme[4], f"claim {new[1]!r}: the command says {new[4]}, the README {readme[4]}"

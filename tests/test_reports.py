"""Tables and plots are views of records: check their arithmetic on hand-made records."""

import math

import pandas as pd
import pytest

from unlearnbench.records import make_records
from unlearnbench.reports import plots
from unlearnbench.reports.paper import paper_table, with_published
from unlearnbench.reports.tables import ORIGINAL, human_bytes, summary_table, to_latex, to_markdown


def records_for(values: dict[str, dict[str, list[float]]], before: dict[str, list[float]]) -> pd.DataFrame:
    """values[method][metric] = one value per target; ``before`` the base model's per target."""
    frames = []
    for method, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for i in range(n):
            keys = dict(run_id="r", suite="clip", suite_version=1, model="m", target=f"t{i}", method=method,
                        config_hash="h", seed=0)
            frames.append(make_records({k: v[i] for k, v in before.items()}, stage="before", **keys))
            frames.append(make_records({k: v[i] for k, v in metrics.items()}, stage="after", **keys))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def records():
    return records_for(
        {"slug": {"FA@1": [0.0, 10.0], "TA_CA@1": [90.0, 80.0], "runtime_s": [2.0, 4.0],
                  "storage_bytes": [4096.0, 4096.0]},
         "ga": {"FA@1": [5.0, 5.0], "TA_CA@1": [50.0, 70.0], "runtime_s": [10.0, 10.0],
                "storage_bytes": [2 * 1024 ** 2] * 2}},
        before={"FA@1": [80.0, 90.0], "TA_CA@1": [95.0, 85.0]})


def test_summary_is_mean_pm_std_with_original_first(records):
    table = summary_table(records, ["FA@1", "TA_CA@1", "runtime_s", "storage_bytes"])
    assert list(table.index) == [ORIGINAL, "slug", "ga"]
    assert table.loc[ORIGINAL, "FA@1"] == f"85.00 ± {math.sqrt(50):.2f}"  # counted once per target
    assert table.loc["slug", "FA@1"] == f"5.00 ± {math.sqrt(50):.2f}"
    assert table.loc["ga", "FA@1"] == "5.00 ± 0.00"
    assert table.loc["slug", "runtime_s"] == "3.0 ± 1.4"
    assert table.loc["ga", "storage_bytes"] == "2.00 MB"
    assert table.loc[ORIGINAL, "runtime_s"] == ""


def test_confidence_interval_half_width(records):
    table = summary_table(records, ["TA_CA@1"], ci=0.95)
    # n = 2: t_{0.975, 1} = 12.706; std of (90, 80) = 7.071; half-width = 12.706 * 7.071 / sqrt(2)
    assert table.loc["slug", "TA_CA@1"] == "85.00 ± 63.53"


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(16 * 1024) == "16.00 KB"
    assert human_bytes(3 * 1024 ** 3) == "3.00 GB"


def test_markdown_and_latex_have_every_row(records):
    table = summary_table(records, ["FA@1", "TA_CA@1"])
    md = to_markdown(table)
    assert md.splitlines()[0] == "| method | FA@1 | TA_CA@1 |"
    assert len(md.strip().splitlines()) == 2 + 3
    tex = to_latex(table)
    assert r"TA\_CA@1" in tex and r"$\pm$" in tex and tex.count(r"\\") == 4


def test_paper_table_puts_published_numbers_beside_ours(records):
    paper_protocol = {"config": "real", "protocol": "slug", "model": "ViT-B-32"}
    view = with_published(records, paper_table("clip-table"), settings=paper_protocol)
    assert list(view.columns[:3]) == ["FA@1", "FA@1 (published)", "FA@5"]
    assert view.loc[ORIGINAL, "FA@1 (published)"] == "73.05"
    assert view.loc["slug", "TA_CA@1 (published)"] == "58.32"
    assert view.loc["ga", "TA_IN@1 (published)"] == "35.88"
    assert "FA@5 (published)" not in view.columns  # no published number, no invented column


def test_paper_clip_table_uses_the_papers_protocol_on_real_data():
    from dataclasses import asdict

    from unlearnbench.benchmarks.clip import ClipSuiteConfig
    from unlearnbench.reports.paper import for_variant
    from unlearnbench.runner import RunSpec

    table = paper_table("clip-table")
    real = for_variant(RunSpec("clip", ["slug"], {"config": "real", "data": "d"}), table, "")
    assert real.suite_overrides == {"protocol": "slug", "config": "real", "data": "d"}
    chosen = for_variant(RunSpec("clip", ["slug"], {"config": "real", "protocol": "heldout"}), table, "")
    assert chosen.suite_overrides["protocol"] == "heldout"  # the user's choice stands, and is footnoted
    assert "protocol" not in for_variant(RunSpec("clip", ["slug"]), table, "").suite_overrides  # embedded
    assert table.comparable(asdict(ClipSuiteConfig(config="real", protocol="slug")))
    assert not table.comparable(asdict(ClipSuiteConfig(config="real", protocol="heldout")))
    assert not table.comparable(asdict(ClipSuiteConfig(config="real", protocol="slug", model="ViT-L-14")))
    assert not table.comparable(asdict(ClipSuiteConfig()))  # embedded


def test_published_numbers_of_another_protocol_carry_a_footnote_mark(records):
    table = paper_table("clip-table")
    view = with_published(records, table, settings={"config": "real", "protocol": "heldout", "model": "ViT-B-32"})
    assert view.loc[ORIGINAL, "FA@1 (published‡)"] == "73.05"
    assert view.loc["slug", "TA_CA@1 (published‡)"] == "58.32"
    assert view.loc["slug", "FA@1"] == "5.00 ± 7.07"  # our own cells are untouched
    assert r"(published$^\ddagger$)" in to_latex(view)
    assert table.note({"config": "embedded"}).startswith("‡ ")
    unlearncanvas = paper_table("unlearncanvas-table")  # no setting measures it the paper's way yet
    assert not unlearncanvas.comparable({"config": "real"}) and unlearncanvas.note(None).startswith("‡ ")
@pytest.mark.parametrize("settings, comparable", [
    ({"config": "real", "match": None}, True), ({"config": "real", "match": "substring"}, True),
    ({"config": "real", "match": "word"}, False), ({"config": "embedded", "match": None}, False), (None, False)])
def test_llava_table_marks_published_numbers_measured_otherwise(settings, comparable):
    table = paper_table("llava-table")
    assert table.suite == "llava" and table.targets == "10" and table.methods[0] == "slug"
    records = records_for({"slug": {"FA": [0.0, 10.0], "TA_ID": [80.0, 90.0], "TA_VQA": [95.0, 97.0]},
                           "ga": {"FA": [50.0, 30.0], "TA_ID": [60.0, 70.0], "TA_VQA": [90.0, 92.0]}},
                          before={"FA": [100.0, 98.0], "TA_ID": [99.0, 97.0], "TA_VQA": [100.0, 98.0]})
    view = with_published(records, table, settings=settings)
    published = "FA (published)" if comparable else "FA (published‡)"
    assert list(view.columns[:4]) == ["FA", published, "TA_ID", "TA_VQA"]
    assert view.loc[ORIGINAL, "FA"] == f"99.00 ± {math.sqrt(2):.2f}"
    assert view.loc["slug", "FA"] == f"5.00 ± {math.sqrt(50):.2f}"
    assert view.loc[ORIGINAL, published] == "99.50" and view.loc["slug", published] == "2.80"
    assert view.loc["ga", published] == ""  # no published number for a row the paper does not report
    assert not any("TA_" in c and "published" in c for c in view.columns)  # its utility is other benchmarks
    assert (table.note(settings) == "") == comparable
    if not comparable:
        assert table.note(settings).startswith("‡ ") and r"$^\ddagger$" in to_latex(view)


def test_tables_without_conditions_stay_unmarked(records):
    from dataclasses import replace

    unconditional = replace(paper_table("clip-table"), comparable_when={})
    assert unconditional.note(None) == ""
    assert "FA@1 (published)" in with_published(records, unconditional, settings={"config": "x"}).columns


def test_paper_variants_label_their_metrics():
    from unlearnbench.reports.paper import label_records

    table = paper_table("unlearncanvas-table")
    style = records_for({"slug": {"UA": [90.0], "IRA": [80.0], "runtime_s": [3.0]}},
                        before={"UA": [0.0], "IRA": [85.0]})
    labelled = label_records(style, "style")
    assert set(labelled.metric) == {"UA (style)", "IRA (style)", "runtime_s (style)"}
    view = with_published(labelled, table)
    assert view.loc["slug", "UA (style)"] == "90.00"
    assert view.loc["slug", "UA (style) (published‡)"] == "86.29"  # measured otherwise: marked
    assert view.loc["slug", "runtime (s) (style) (published‡)"] == "39 s"


def test_plots_are_written(records, tmp_path):
    assert plots.forget_vs_retain(records, "FA@1", "TA_CA@1", tmp_path / "a.png").stat().st_size > 0
    assert plots.cost_bars(records, tmp_path / "b.png").stat().st_size > 0
    layers = pd.DataFrame({"layer": ["visual.proj", "visual.x", "text_projection"],
                           "tower": ["vision", "vision", "text"],
                           "importance": [0.3, 0.1, 0.2], "alignment": [0.1, 0.2, 0.05],
                           "on_front": [True, False, True], "chosen": [True, False, False]})
    assert plots.slug_layers(layers, tmp_path / "c.png").stat().st_size > 0


def test_cells_of_labelled_cost_columns_keep_their_format():
    from unlearnbench.reports.tables import format_cell

    assert format_cell(16384.0, 0.0, 1, "storage_bytes (style)") == format_cell(16384.0, 0.0, 1, "storage_bytes")
    assert format_cell(896.0, 0.0, 1, "backward_samples (object)") == "896"
    assert format_cell(30.81, 1.0, 2, "runtime_s (style)") == "30.8 ± 1.0"


def test_forget_vs_retain_reads_directions_and_shares_labels(monkeypatch, tmp_path):
    """UnlearnCanvas' UA is higher the more is forgotten; points on (or next to) the original share its label."""
    import matplotlib.pyplot as plt

    records = records_for({"slug": {"UA": [90.0], "IRA": [80.0], "goal_met": [1.0]},
                           "noop": {"UA": [0.0], "IRA": [95.0], "goal_met": [0.0]},
                           "ga": {"UA": [1.0], "IRA": [94.0], "goal_met": [1.0]}},
                          before={"UA": [0.0], "IRA": [95.0]})
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path: figures.append(fig) or path)
    plots.forget_vs_retain(records, "UA", "IRA", tmp_path / "a.png", {"UA": True, "IRA": True})
    plots.forget_vs_retain(records.assign(metric=records.metric.replace({"UA": "FA"})), "FA", "IRA",
                           tmp_path / "b.png", {"FA": False, "IRA": True})
    canvas, clip = (fig.axes[0] for fig in figures)
    assert canvas.get_xlabel() == "UA ↑ (higher = more forgotten)"
    assert canvas.get_ylabel() == "IRA ↑ (higher = better kept)"
    assert clip.get_xlabel() == "FA ↓ (lower = more forgotten)"
    assert sorted(text.get_text() for text in canvas.texts) == ["original, noop †, ga", "slug"]
    for fig in figures:
        plt.close(fig)


def test_markdown_tables_read_back_with_pipes_and_line_breaks():
    from unlearnbench.reports.tables import from_markdown

    table = pd.DataFrame({"question": ["who | is this?", "colour?"], "answer": ["a|b\nc", "red"]}).set_index("question")
    back = from_markdown(to_markdown(table, index_name="question"))
    assert back.values.tolist() == [["who | is this?", "a|b c"], ["colour?", "red"]]
    with pytest.raises(ValueError):
        from_markdown("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n")

"""Tables and plots are views of records: check their arithmetic on hand-made records."""

import math

import numpy as np
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
    assert [cell.strip() for cell in md.splitlines()[0].strip("|").split("|")] == ["method", "FA@1", "TA_CA@1"]
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
    plots.forget_vs_retain(records, "UA", "IRA", tmp_path / "a.png",
                           {"UA": {"higher_is_better": True, "about": "share no longer recognised"},
                            "IRA": {"higher_is_better": True}})
    plots.forget_vs_retain(records.assign(metric=records.metric.replace({"UA": "FA"})), "FA", "IRA",
                           tmp_path / "b.png", {"FA": {"higher_is_better": False}, "IRA": {"higher_is_better": True}})
    canvas, clip = (fig.axes[0] for fig in figures)
    assert canvas.get_xlabel() == "UA ↑ (higher = more forgotten)\nshare no longer recognised"  # words from metadata
    assert canvas.get_ylabel() == "IRA ↑ (higher = better kept)"
    assert clip.get_xlabel() == "FA ↓ (lower = more forgotten)"
    assert sorted(text.get_text() for text in canvas.texts) == ["original, noop †, ga", "slug"]
    for fig in figures:
        plt.close(fig)


def test_markdown_cells_cannot_break_their_row():
    table = pd.DataFrame({"question": ["who | is this?", "colour?"], "answer": ["a|b\nc", "red"]}).set_index("question")
    lines = to_markdown(table, index_name="question").strip().splitlines()
    assert len(lines) == 4 and all(line.count("|") - line.count(r"\|") == 3 for line in lines)


def captured(monkeypatch) -> list:
    """The figures plots.py would write, kept open for the test to read (and closed by it)."""
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_cost_bars_are_linear_from_zero_with_every_method_and_its_value(records, monkeypatch, tmp_path):
    """420 vs 572 passes must look 1.4x apart, not 10x: linear axes from zero; a method that costs nothing
    is a bar of height zero labelled 0, not a missing bar."""
    import matplotlib.pyplot as plt

    noop = records_for({"noop": {"runtime_s": [0.0, 0.0], "storage_bytes": [0.0, 0.0]}},
                       before={"FA@1": [80.0, 90.0], "TA_CA@1": [95.0, 85.0]})
    figures = captured(monkeypatch)
    plots.cost_bars(pd.concat([records, noop[noop.stage == "after"]], ignore_index=True), tmp_path / "c.png")
    runtime, storage = figures[0].axes
    for ax in (runtime, storage):
        assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
        assert [t.get_text() for t in ax.get_xticklabels()] == ["slug", "ga", "noop"]
    assert [bar.get_height() for bar in runtime.containers[0]] == pytest.approx([3.0, 10.0, 0.0])
    assert [t.get_text() for t in runtime.texts] == ["3.0", "10.0", "0.0"]
    assert [t.get_text() for t in storage.texts] == ["4.00 KB", "2.00 MB", "0 B"]
    assert storage.get_ylabel() == "MB" and storage.containers[0][1].get_height() == pytest.approx(2.0)
    plt.close(figures[0])


def canvas_search_trace() -> pd.DataFrame:
    """The reference search of SLUG on a text-to-image model: 7 of 10 trials exited early (no scores)."""
    rows = [{"layer": "text_encoder.layers.3.mlp.fc2.weight", "trial": i, "step": 0.5 * 1.5 ** i, "met": False,
             "forgot": False, "exited_early": True, "target_acc": float("nan"), "IRA": float("nan"),
             "target_hits": 1 + i % 2, "target_images": 1 + i % 2, "images": 1} for i in range(7)]
    rows += [{"layer": "text_encoder.layers.3.mlp.fc2.weight", "trial": 7 + i, "step": 10.0 + i, "met": i == 2,
              "forgot": i > 0, "exited_early": False, "target_acc": [33.3, 0.0, 0.0][i], "IRA": [90.0, 60.0, 85.0][i],
              "target_hits": [1, 0, 0][i], "target_images": 3, "images": 6} for i in range(3)]
    return pd.DataFrame(rows)


def test_step_search_draws_every_trial_with_axes_in_words(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    trace = canvas_search_trace()
    figures = captured(monkeypatch)
    metadata = {"target_acc": {"higher_is_better": False, "about": "share of the target's images still recognised"},
                "IRA": {"higher_is_better": True, "about": "other classes classified correctly"}}
    plots.step_search(trace, "target_acc", "IRA", tmp_path / "s.png", "SLUG step search",
                      metadata, ("text_encoder.layers.3.mlp.fc2.weight", 12.0), 0.0)
    fig = figures[0]
    forget, retain = fig.axes
    for ax in (forget, retain):  # every trial is a point of each panel, scored or not
        assert sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "trials") == len(trace)
    early = [c for c in forget.collections if c.get_gid() == "trials" and len(c.get_offsets()) == 7]
    assert early and list(early[0].get_offsets()[:, 1]) == pytest.approx([100.0] * 7)  # all it saw was recognised
    assert [len(c.get_offsets()) for c in forget.collections if c.get_gid() == "chosen"] == [1]
    assert "share of the target's images still recognised" in forget.get_ylabel()
    assert "other classes classified correctly" in retain.get_ylabel()
    legend = fig.legends[0]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes), "the legend covers no point"
    assert {"exited early: × at the share\nof its images still recognised", "applied"} <= {
        t.get_text() for t in legend.get_texts()}
    plt.close(fig)


def test_layer_plot_keeps_its_title_and_legend_clear_of_the_axes(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    layers = pd.DataFrame({"layer": ["text_encoder.layers.3.mlp.fc2.weight", "text_encoder.layers.1.mlp.fc1.weight"],
                           "tower": ["text", "text"], "importance": [0.3, 0.1], "alignment": [0.1, 0.2],
                           "on_front": [True, False], "chosen": [True, False]})
    figures = captured(monkeypatch)
    plots.slug_layers(layers, tmp_path / "l.png",
                      title="SLUG layers: Van_Gogh_Style-1234abcd — slug-qkv (search_steps=10, "
                            "group_update=true), seed 0")
    fig = figures[0]
    fig.canvas.draw()
    inside = fig.bbox
    for text in [fig._suptitle, *(t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label))]:
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, f"{text.get_text()!r} is cut off"
    legend = fig.axes[0].get_legend()
    assert not legend.get_window_extent().overlaps(fig.axes[0].get_window_extent())
    plt.close(fig)


def test_forget_vs_retain_shows_each_unit_and_the_spread(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    records = records_for({"slug": {"FA@1": [0.0, 10.0], "TA_CA@1": [90.0, 80.0], "goal_met": [1.0, 1.0]},
                           "ga": {"FA@1": [5.0, 5.0], "TA_CA@1": [50.0, 70.0], "goal_met": [1.0, 1.0]}},
                          before={"FA@1": [80.0, 90.0], "TA_CA@1": [95.0, 85.0]})
    figures = captured(monkeypatch)
    plots.forget_vs_retain(records, "FA@1", "TA_CA@1", tmp_path / "f.png")
    ax = figures[0].axes[0]
    units = [c.get_offsets().tolist() for c in ax.collections if c.get_gid() == "units"]
    assert units == [[[80.0, 95.0], [90.0, 85.0]], [[0.0, 90.0], [10.0, 80.0]], [[5.0, 50.0], [5.0, 70.0]]]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    slug_y = bars[1].lines[2][1].get_segments()[0][:, 1]  # the vertical bar: mean 85 ± std 7.07
    assert slug_y == pytest.approx([85 - math.sqrt(50), 85 + math.sqrt(50)])
    plt.close(figures[0])


def test_units_table_has_one_row_per_unit_with_what_its_method_chose(records):
    from unlearnbench.reports.tables import unit_table

    records = records_for({"slug": {"FA@1": [0.0, 10.0], "TA_CA@1": [90.0, 80.0], "goal_met": [1.0, 0.0],
                                    "runtime_s": [2.0, 4.0]},
                           "ga": {"FA@1": [5.0, 5.0], "TA_CA@1": [50.0, 70.0], "goal_met": [1.0, 1.0],
                                  "runtime_s": [10.0, 10.0]}},
                          before={"FA@1": [80.0, 90.0], "TA_CA@1": [95.0, 85.0]})
    units = {f"{t}__{m}": {"target": t, "method": m, "config_hash": "h", "seed": 0}
             for m in ("slug", "ga") for t in ("t0", "t1")}
    choices = {"t0__slug": {"layer": "visual.proj", "step": 0.123456, "method": "slug"}, "t1__ga": {"kept_epoch": 3}}
    table = unit_table(records, units, ["FA@1", "TA_CA@1"], choices)
    assert list(table.index) == ["t0", "t1", "t0", "t1"]
    assert list(table.columns) == ["seed", "method", "FA@1", "TA_CA@1", "goal", "layer", "step", "epoch kept",
                                   "runtime_s"]
    assert table.iloc[0].tolist() == ["0", "slug †", "0.00", "90.00", "met", "visual.proj", "0.123", "", "2.0"]
    assert table.iloc[1][["FA@1", "goal", "runtime_s"]].tolist() == ["10.00", "missed", "4.0"]
    assert table.iloc[3][["method", "epoch kept", "layer"]].tolist() == ["ga", "3", ""]


def test_lm_eval_utility_columns_join_the_run_table():
    from unlearnbench.reports.tables import report_columns

    records = records_for({"slug": {"FA": [0.0], "util:ub_vqa:acc": [0.8], "util:ub_vqa:acc_stderr": [0.02]}},
                          before={"FA": [100.0], "util:ub_vqa:acc": [0.9], "util:ub_vqa:acc_stderr": [0.02]})
    columns = report_columns(records, ("FA", "TA_ID"))
    assert columns[:3] == ["FA", "TA_ID", "util:ub_vqa:acc"] and "util:ub_vqa:acc_stderr" not in columns
    table = summary_table(records, columns)
    assert table.loc["slug", "util:ub_vqa:acc"] == "0.80" and table.loc[ORIGINAL, "util:ub_vqa:acc"] == "0.90"
    assert "util:ub\\_vqa:acc" in to_latex(table) and "util:ub_vqa:acc" in to_markdown(table)


def test_sample_grids_are_labelled_with_the_target_row_marked(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    from unlearnbench.benchmarks.base import SampleGrid
    from unlearnbench.compute import save_samples

    figures = captured(monkeypatch)
    image = np.zeros((3 * 8, 2 * 8, 3), np.uint8)
    grid = SampleGrid(image, ("Van Gogh", "Monet", "Cubism"), ("Dogs", "Cats"), marked=1)
    save_samples(grid, grid, tmp_path / "samples.png", "Monet — slug, seed 0")
    fig = figures[0]
    before, after = fig.axes
    for ax in (before, after):
        rows = [t.get_text() for t in ax.get_yticklabels()]
        assert rows == ["Van Gogh", "▶ Monet (target)", "Cubism"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["Dogs", "Cats"]
        assert ax.get_yticklabels()[1].get_color() == "red"
        frame = [p for p in ax.patches if p.get_gid() == "target"]
        assert len(frame) == 1 and frame[0].get_y() == pytest.approx(8 - 0.5) and frame[0].get_height() == 8
    assert [ax.get_title() for ax in fig.axes] == ["before unlearning", "after unlearning"]
    plt.close(fig)

"""Everything a finished run writes beside its records: table.md, table.tex and PNG plots."""

from __future__ import annotations

from unlearnbench.benchmarks.base import Suite
from unlearnbench.cache import atomic_write_text
from unlearnbench.reports import plots
from unlearnbench.reports.tables import COST_COLUMNS, summary_table, to_latex, to_markdown, to_terminal
from unlearnbench.runner import RunResult


def write_run_report(result: RunResult, suite: Suite, ci: float | None = None) -> str:
    """Write the run's tables and plots; return the terminal table."""
    table = summary_table(result.records, [*suite.table_metrics, *COST_COLUMNS], ci)
    spread = "std" if ci is None else f"the half-width of the {ci:.0%} t confidence interval"
    run_dir = result.run_dir
    header = (f"# {suite.name} (v{suite.version}) — run {result.manifest['run_id']}\n\n"
              f"Model: `{suite.model_id()}`; targets: {', '.join(result.manifest['targets'])}; "
              f"seeds: {result.manifest['seeds']}. Cells: mean ± {spread} over targets and seeds; "
              f"metrics in %, runtime in seconds, storage = patch tensor bytes.\n\n")
    atomic_write_text(run_dir / "table.md", header + to_markdown(table))
    atomic_write_text(run_dir / "table.tex", to_latex(table))
    forget, retain = suite.plot_axes
    plots.forget_vs_retain(result.records, forget, retain, run_dir / "forget_vs_retain.png")
    plots.cost_bars(result.records, run_dir / "costs.png")
    for key, layers in result.artifacts.items():
        unit, kind = key.split("/")
        if kind == "layers":
            plots.slug_layers(layers, run_dir / "plots" / f"{unit}__slug_layers.png", title=f"SLUG layers — {unit}")
    return to_terminal(table)

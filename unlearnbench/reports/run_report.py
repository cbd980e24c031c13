"""Everything a finished run writes beside its records: table.md, table.tex and PNG plots."""

from __future__ import annotations

import json

from unlearnbench.benchmarks.base import Suite
from unlearnbench.cache import atomic_write_text
from unlearnbench.reports import plots
from unlearnbench.reports.tables import (COST_COLUMNS, GOAL_COLUMN, MISSED, MISSED_NOTE, summary_table, to_latex,
                                         to_markdown, to_terminal)
from unlearnbench.runner import RunResult


def write_run_report(result: RunResult, suite: Suite, ci: float | None = None) -> str:
    """Write the run's tables and plots; return the terminal table."""
    table = summary_table(result.records, [*suite.table_metrics, GOAL_COLUMN, *COST_COLUMNS], ci)
    missed_note = f"\n{MISSED_NOTE}\n" if any(label.endswith(MISSED) for label in table.index) else ""
    spread = "std" if ci is None else f"the half-width of the {ci:.0%} t confidence interval"
    run_dir = result.run_dir
    header = (f"# {suite.name} (v{suite.version}) — run {result.manifest['run_id']}\n\n"
              f"Model: `{suite.model_id()}`; targets: {', '.join(result.manifest['targets'])}; "
              f"seeds: {result.manifest['seeds']}. Cells: mean ± {spread} over targets and seeds; "
              f"metrics in %, runtime in seconds, storage = patch tensor bytes. {goal_sentence(result.manifest)}\n\n")
    atomic_write_text(run_dir / "table.md", header + to_markdown(table) + missed_note)
    atomic_write_text(run_dir / "table.tex", to_latex(table))
    forget, retain = suite.plot_axes
    directions = {m.name: m.higher_is_better for m in suite.metrics}
    plots.forget_vs_retain(result.records, forget, retain, run_dir / "forget_vs_retain.png", directions)
    plots.cost_bars(result.records, run_dir / "costs.png")
    for key, layers in result.artifacts.items():
        unit, kind = key.split("/")
        if kind == "layers":
            plots.slug_layers(layers, run_dir / "plots" / f"{unit}__slug_layers.png", title=f"SLUG layers — {unit}")
    return to_terminal(table) + (f"\n{MISSED_NOTE}" if missed_note else "")


def goal_sentence(manifest: dict) -> str:
    """The goal every unit was judged against, in words (from the manifest, one per run)."""
    goals = {json.dumps(unit["goal"], sort_keys=True) for unit in manifest["units"].values()}
    if len(goals) != 1:
        return "goal_met: whether each unit met its task's goal on validation."
    goal = json.loads(goals.pop())
    text = f"goal_met: {goal['forget_metric']} ≤ {goal['forget_threshold']:g} on validation"
    if goal.get("retain_tolerance") is not None:
        text += f" with {goal['retain_metric']} at most {goal['retain_tolerance']:g} points below the base model"
    return text + " (units that met it / units)."

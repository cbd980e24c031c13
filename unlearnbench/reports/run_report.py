"""Everything a finished run writes beside its records: table.md, table.tex, PNG plots and report.html.

A stored run is reported exactly as a fresh one (``bench.py report RUN``): records, manifest and
artifacts come from its folder, and only the suite's declared table columns and plot axes from its class.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from unlearnbench.benchmarks.base import Suite
from unlearnbench.cache import atomic_write_text
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports import plots
from unlearnbench.reports.compare import StoredRun
from unlearnbench.reports.html import Figure, RunPart, UnitPart, write_report
from unlearnbench.reports.tables import (COST_COLUMNS, GOAL_COLUMN, MISSED, MISSED_NOTE, loaded_note, summary_table,
                                         to_latex, to_markdown, to_terminal)
from unlearnbench.runner import RunResult


@dataclass(frozen=True)
class RunReport:
    terminal: str  # the table as the terminal shows it
    part: RunPart  # the run's figures and units, for a page that gathers several runs (bench.py paper)


def write_run_report(result: RunResult, suite: type[Suite], ci: float | None = None) -> RunReport:
    """Write the run's tables, plots and report.html; ``suite`` is the run's suite class."""
    manifest, run_dir = result.manifest, result.run_dir
    table = summary_table(result.records, [*suite.table_metrics, GOAL_COLUMN, *COST_COLUMNS], ci)
    load = loaded_note(manifest["units"])
    missed = MISSED_NOTE if any(label.endswith(MISSED) for label in table.index) else ""
    notes = [note for note in (missed, load) if note]  # under the table, in table.md and the terminal
    spread = "std" if ci is None else f"the half-width of the {ci:.0%} t confidence interval"
    cells = (f"Cells: mean ± {spread} over targets and seeds; metrics in %, runtime in seconds, storage = patch "
             "tensor bytes.")
    title = f"{manifest['suite']['name']} (v{manifest['suite']['version']}) — run {manifest['run_id']}"
    header = (f"# {title}\n\nModel: `{manifest['suite']['model']}`; targets: {', '.join(manifest['targets'])}; "
              f"seeds: {manifest['seeds']}. {cells} {goal_sentence(manifest)}\n\n")
    atomic_write_text(run_dir / "table.md", header + to_markdown(table) + "".join(f"\n{n}\n" for n in notes))
    atomic_write_text(run_dir / "table.tex", to_latex(table))
    part = write_figures(result, suite)
    write_report(run_dir / "report.html", title, [cells, goal_sentence(manifest), *([load] if load else [])], table,
                 [part])
    return RunReport(to_terminal(table) + "".join(f"\n{n}" for n in notes), part)


def write_figures(result: RunResult, suite: type[Suite]) -> RunPart:
    """The run's PNG figures: forget vs retain and costs; per SLUG unit its layers and its step search."""
    manifest, run_dir = result.manifest, result.run_dir
    directions = {name: meta["higher_is_better"] for name, meta in manifest["metrics"].items()}
    forget, retain = suite.plot_axes
    figures = [Figure(f"{forget} against {retain} per method (mean over targets and seeds)",
                      plots.forget_vs_retain(result.records, forget, retain, run_dir / "forget_vs_retain.png",
                                             directions))]
    costs = plots.cost_bars(result.records, run_dir / "costs.png")
    if costs is not None:
        figures.append(Figure("Costs per method (log scales; zero costs have no bar)", costs))
    units = []
    for name, info in manifest["units"].items():
        shown = []
        layers = result.artifacts.get(f"{name}/layers")
        if layers is not None:
            shown.append(Figure("SLUG: layer importance against gradient alignment, Pareto front and chosen layer",
                                plots.slug_layers(layers, run_dir / "plots" / f"{name}__slug_layers.png",
                                                  title=f"SLUG layers — {name}")))
        trace = result.artifacts.get(f"{name}/trace")
        if layers is not None and trace is not None:
            chosen = layers.layer[layers.chosen].iloc[0] if "chosen" in layers and layers.chosen.any() else None
            goal = info["goal"]
            shown.append(Figure("SLUG's step search per front layer: validation scores of every step tried",
                                plots.slug_search(trace, goal["forget_metric"], goal["retain_metric"],
                                                  run_dir / "plots" / f"{name}__slug_search.png",
                                                  f"SLUG step search — {name}", directions, chosen)))
        # The runner writes a generative suite's sample grid and a question-answering suite's answers here.
        samples, answers = run_dir / "samples" / f"{name}.png", run_dir / "answers" / f"{name}.md"
        if samples.is_file():
            shown.append(Figure("Samples before | after unlearning", samples))
        if shown or answers.is_file():
            units.append(UnitPart(name, tuple(shown), answers if answers.is_file() else None))
    return RunPart("", manifest, tuple(figures), tuple(units))


def stored_result(path: str | Path) -> RunResult:
    """A finished run as ``runner.run`` returned it, read from its folder (records, manifest and every
    unit's artifacts); nothing is recomputed."""
    stored = StoredRun.load(path, "RUN")
    missing = [key for key in ("suite", "methods", "targets", "seeds", "units") if key not in stored.manifest]
    if missing:
        raise UnlearnBenchError(f"RUN {path}: its manifest lacks {', '.join(missing)} (written by an older "
                                "unlearnbench); rerun it with this version")
    artifacts = {}
    for name in stored.manifest["units"]:
        for file in sorted(stored.path.glob(f"artifacts/{glob.escape(name)}__*.parquet")):
            try:
                artifacts[f"{name}/{file.stem[len(name) + 2:]}"] = pd.read_parquet(file)
            except (OSError, ValueError) as err:
                raise UnlearnBenchError(f"RUN {path}: artifact {file.name} is unreadable ({err}); rerun the "
                                        "run to rewrite it") from None
    reused = sum(bool(unit.get("reused")) for unit in stored.manifest["units"].values())
    return RunResult(stored.path, stored.records, stored.manifest, artifacts, reused=reused)


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

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
from unlearnbench.patch import stored_metadata
from unlearnbench.records import COST_METRICS, GOAL_METRICS
from unlearnbench.reports.tables import (MISSED, MISSED_NOTE, loaded_note, report_columns, summary_table, to_latex,
                                         to_markdown, to_terminal, unit_table, util_columns)
from unlearnbench.runner import RunResult


@dataclass(frozen=True)
class RunReport:
    terminal: str  # the table as the terminal shows it
    part: RunPart  # the run's figures and units, for a page that gathers several runs (bench.py paper)


def write_run_report(result: RunResult, suite: type[Suite], ci: float | None = None) -> RunReport:
    """Write the run's tables, plots and report.html; ``suite`` is the run's suite class."""
    manifest, run_dir = result.manifest, result.run_dir
    configs = method_configs(manifest)
    columns = report_columns(result.records, suite.table_metrics, suite.plot_axes[0])
    table = summary_table(result.records, columns, ci, configs)
    load = loaded_note(manifest["units"])
    missed = MISSED_NOTE if any(label.endswith(MISSED) for label in table.index) else ""
    notes = [note for note in (missed, load) if note]  # under the table, in table.md and the terminal
    spread = "std" if ci is None else f"the half-width of the {ci:.0%} t confidence interval"
    cells = (f"Cells: mean ± {spread} over targets and seeds; metrics in %"
             + (" (lm-eval's util:* columns: fractions, as lm-eval reports them)" if util_columns(result.records)
                else "") + "; runtime in seconds, storage = patch tensor bytes.")
    title = f"{manifest['suite']['name']} (v{manifest['suite']['version']}) — run {manifest['run_id']}"
    header = (f"# {title}\n\nModel: `{manifest['suite']['model']}`; targets: {', '.join(manifest['targets'])}; "
              f"seeds: {manifest['seeds']}. {cells} {goal_sentence(manifest)}\n\n")
    units = unit_table(result.records, manifest["units"], test_metrics(result.records, manifest, suite),
                       unit_choices(run_dir, manifest), configs)
    atomic_write_text(run_dir / "table.md", header + to_markdown(table) + "".join(f"\n{n}\n" for n in notes)
                      + ("\n## Units\n\nOne row per unit: its test metrics, whether it met the goal on validation, "
                         "what its method chose (where it says) and its runtime.\n\n" + to_markdown(units, "target")
                         if len(units) else ""))
    atomic_write_text(run_dir / "table.tex", to_latex(table))
    part = write_figures(result, suite, units)
    write_report(run_dir / "report.html", title, [cells, goal_sentence(manifest), *([load] if load else [])], table,
                 [part])
    return RunReport(to_terminal(table) + "".join(f"\n{n}" for n in notes), part)


def method_configs(manifest: dict) -> dict[tuple[str, str], dict]:
    """(method, config hash) -> its settings, for variant labels that name the settings that differ."""
    return {(m.get("method", name), m["config_hash"]): m["config"] for name, m in manifest["methods"].items()}


def test_metrics(records: pd.DataFrame, manifest: dict, suite: type[Suite]) -> list[str]:
    """The metrics a unit's row shows: the suite's table columns, its other test metrics the run has, and
    lm-eval's utility metrics; not the goal's, costs or validation-only metrics."""
    other = {m.name for m in (*GOAL_METRICS, *COST_METRICS, *suite.validation_metrics)}
    present = set(records.metric)
    names = [*suite.table_metrics, *(m for m in manifest["metrics"] if m not in other), *util_columns(records)]
    return [m for m in dict.fromkeys(names) if m in present and not m.endswith("_stderr")]


def unit_choices(run_dir: Path, manifest: dict) -> dict[str, dict]:
    """Each unit's method's report of its choice (layer, step, alpha, the epoch kept), from the metadata of
    the unit's patch (patches/<unit>.safetensors); a unit whose patch is missing has none."""
    choices = {}
    for name in manifest["units"]:
        patch = run_dir / "patches" / f"{name}.safetensors"
        if patch.is_file():
            choices[name] = stored_metadata(patch)
    return choices


def write_figures(result: RunResult, suite: type[Suite], units_table: pd.DataFrame | None = None) -> RunPart:
    """The run's PNG figures: forget vs retain and costs; per unit, every trace its method stored (SLUG's
    layers and step search, an iterative method's epochs, ESD's iterations) and its labelled samples."""
    manifest, run_dir = result.manifest, result.run_dir
    metrics = manifest["metrics"]
    forget, retain = suite.plot_axes
    figures = [Figure(f"{forget} against {retain} per method: mean over targets and seeds with ± std error bars; "
                      "the small points are the single units",
                      plots.forget_vs_retain(result.records, forget, retain, run_dir / "forget_vs_retain.png",
                                             metrics))]
    costs = plots.cost_bars(result.records, run_dir / "costs.png")
    if costs is not None:
        figures.append(Figure("Costs per method: linear axes from zero, each bar labelled with its mean over "
                              "units (lines: ± std)", costs))
    choices = unit_choices(run_dir, manifest)
    units = []
    for name, info in manifest["units"].items():
        shown = unit_figures(result, name, info, metrics, choices.get(name, {}))
        # The runner writes a generative suite's sample grid and a question-answering suite's answers here.
        samples = run_dir / "samples" / f"{name}.png"
        answers = next((path for path in (run_dir / "answers" / f"{name}.parquet", run_dir / "answers" / f"{name}.md")
                        if path.is_file()), None)
        if samples.is_file():
            shown.append(Figure("Samples before | after unlearning (the target's row framed in red)", samples))
        if shown or answers is not None:
            units.append(UnitPart(name, tuple(shown), answers))
    return RunPart("", manifest, tuple(figures), tuple(units),
                   units_table if units_table is not None else pd.DataFrame())


def unit_figures(result: RunResult, name: str, info: dict, metrics: dict[str, dict], chose: dict) -> list[Figure]:
    """Every trace a unit's method stored, drawn: SLUG's layers, a step search, epochs, iterations."""
    plot_dir = result.run_dir / "plots"
    goal = info["goal"]
    who = f"{info['target']} — {info['method']}, seed {info['seed']}"
    shown = []
    layers = result.artifacts.get(f"{name}/layers")
    if layers is not None:
        shown.append(Figure("SLUG: layer importance against gradient alignment, Pareto front and chosen layer",
                            plots.slug_layers(layers, plot_dir / f"{name}__slug_layers.png",
                                              title=f"SLUG layers: {who}")))
    trace = result.artifacts.get(f"{name}/trace")
    if trace is not None and "step" in trace:
        method = "SLUG" if layers is not None else info["method"]
        chosen = (chose.get("layer"), float(chose["step"])) if "step" in chose else None
        if "alpha" in chose and chosen is None:
            chosen = (None, 1 / float(chose["alpha"]))
        shown.append(Figure(f"{method}'s step search: the validation scores of every trial (× where a score was not "
                            "computed), the step applied starred",
                            plots.step_search(trace, goal["forget_metric"], goal["retain_metric"],
                                              plot_dir / f"{name}__search.png", f"{method} step search: {who}",
                                              metrics, chosen, goal["forget_threshold"], method)))
    elif trace is not None and "epoch" in trace:
        shown.append(Figure(f"{info['method']} per epoch: validation scores and training losses, the epoch kept "
                            "starred",
                            plots.epoch_trace(trace, goal["forget_metric"], goal["retain_metric"],
                                              plot_dir / f"{name}__epochs.png", f"{info['method']} epochs: {who}",
                                              metrics, goal["forget_threshold"])))
    iterations = result.artifacts.get(f"{name}/iterations")
    if iterations is not None and {"iteration", "loss"} <= set(iterations.columns):
        shown.append(Figure(f"{info['method']}'s training loss per iteration",
                            plots.iteration_losses(iterations, plot_dir / f"{name}__iterations.png",
                                                   f"{info['method']} iterations: {who}")))
    return shown


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

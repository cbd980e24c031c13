"""Tables derived from tidy records: a terminal summary and the paper's layouts (Markdown, LaTeX).

Cells are the mean over targets and seeds; with more than one value, ``mean ± std``, or with
``ci`` the half-width of Student's t confidence interval of the mean at that level (scipy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from tabulate import tabulate

ORIGINAL = "original"
ATTACK_SEPARATOR = "|"  # METRIC|VARIANT of an attack (unlearnbench/attacks/base.py)
UTIL_PREFIX = "util:"  # lm-eval utility metrics (unlearnbench/lm_eval_utility.py)
COST_COLUMNS = ("runtime_s", "storage_bytes", "forward_samples", "backward_samples")
GOAL_COLUMN = "goal_met"
MISSED = " †"  # appended to a variant that missed the goal on some target or seed
MISSED_NOTE = "† missed the goal on validation for at least one target or seed (see the goal_met column)."
# Other processes' share of the CPUs (costs.OtherLoad, per unit) from which a unit's timings read high.
LOADED_PERCENT = 25.0


def loaded_note(units: dict[str, dict], role: str = "") -> str:
    """A warning naming how many units were timed while other processes took ``LOADED_PERCENT`` or more of
    the CPUs (their runtimes are not comparable to ones taken alone); "" when none were."""
    shares = {name: info["other_cpu_percent"] for name, info in units.items() if "other_cpu_percent" in info}
    loaded = sorted(name for name, share in shares.items() if share >= LOADED_PERCENT)
    if not loaded:
        return ""
    worst = max(shares[name] for name in loaded)
    return (f"{role}{len(loaded)} of {len(units)} units were timed while other processes used {LOADED_PERCENT:g}% "
            f"or more of the CPUs (up to {worst:.0f}%): their runtimes read high; rerun alone into a new --out "
            f"to time them (first: {loaded[0]}).")


def variant_labels(records: pd.DataFrame, configs: dict[tuple[str, str], dict] | None = None) -> dict[tuple, str]:
    """A readable label per (method, config hash): the method's name when the records hold one
    configuration of it, else the name with the settings that tell its configurations apart
    (from ``configs``, keyed by (method, config hash)), or with the config hash when unknown."""
    pairs = list(dict.fromkeys(zip(records.method, records.config_hash)))
    labels = {}
    for method in dict.fromkeys(m for m, _ in pairs):
        hashes = [h for m, h in pairs if m == method]
        if len(hashes) == 1:
            labels[(method, hashes[0])] = method
            continue
        known = [(configs or {}).get((method, h)) for h in hashes]
        differing = (sorted(k for k in known[0] if len({repr(c.get(k)) for c in known}) > 1)
                     if all(c is not None for c in known) else [])
        for h, config in zip(hashes, known):
            detail = ", ".join(f"{k}={config[k]}" for k in differing) if differing else h[:8]
            labels[(method, h)] = f"{method} ({detail})"
    return labels


def labelled_values(records: pd.DataFrame, configs: dict[tuple[str, str], dict] | None = None) -> pd.DataFrame:
    """Every unit's ``after`` rows and the base model's (method ``original``) with a readable ``variant``
    label, marked with ``MISSED`` where the variant missed the goal on some unit: what tables and
    figures of a run's variants are drawn from.

    The base model's rows come from the ``before`` stage of one method per (target, seed), so they count
    once per target and seed however many methods ran.
    """
    before = records[records.stage == "before"]
    first = before[["method", "config_hash"]].iloc[0].tolist() if len(before) else [None, None]
    original = before[(before.method == first[0]) & (before.config_hash == first[1])]
    original = original.assign(method=ORIGINAL, config_hash="")
    both = pd.concat([original, records[records.stage == "after"]], ignore_index=True)
    labels = variant_labels(both, configs)
    # A paper table labels each run's metrics ("goal_met (style)"): the goal counts in every run.
    goal = both[both.metric.str.split(" (", regex=False).str[0] == GOAL_COLUMN]
    missed = {key for key, value in goal.groupby(["method", "config_hash"]).value.min().items() if value < 1}
    both.insert(0, "variant", [labels[(m, h)] + (MISSED if (m, h) in missed else "")
                               for m, h in zip(both.method, both.config_hash)])
    return both


def method_metric_stats(records: pd.DataFrame, configs: dict[tuple[str, str], dict] | None = None) -> pd.DataFrame:
    """Mean, std and count per (variant, method, config hash, metric) of ``labelled_values``, in run order."""
    values = labelled_values(records, configs)
    return (values.groupby(["variant", "method", "config_hash", "metric"], sort=False).value
            .agg(["mean", "std", "count"]).reset_index())


def util_columns(records: pd.DataFrame) -> list[str]:
    """The lm-eval utility metrics the records hold (``util:<task>:<metric>``, without their stderrs)."""
    return [m for m in dict.fromkeys(records.metric) if m.startswith(UTIL_PREFIX) and not m.endswith("_stderr")]


def attack_columns(records: pd.DataFrame, forget_metric: str) -> list[str]:
    """Where the run has attacks (unlearnbench/attacks/): ``forget_metric`` after each attack variant, then
    each attack's runtime, in the order the records hold them."""
    metrics = list(dict.fromkeys(records.metric))
    return ([m for m in metrics if m.startswith(f"{forget_metric}{ATTACK_SEPARATOR}")]
            + [m for m in metrics if m.startswith(f"runtime_s{ATTACK_SEPARATOR}")])


def report_columns(records: pd.DataFrame, table_metrics: Sequence[str], forget_metric: str | None = None) -> list[str]:
    """A run's table columns: the suite's table metrics, lm-eval utility metrics where the run has them,
    whether the goal was met, and the costs; with ``forget_metric``, the attacks' columns where it has any."""
    attacked = attack_columns(records, forget_metric) if forget_metric else []
    return [*table_metrics, *util_columns(records), GOAL_COLUMN, *COST_COLUMNS, *attacked]


def summary_table(records: pd.DataFrame, metrics: Sequence[str], ci: float | None = None,
                  configs: dict[tuple[str, str], dict] | None = None) -> pd.DataFrame:
    """variants x metrics of formatted cells, in run order, the original model first. A variant that
    missed the goal anywhere is marked with ``MISSED``."""
    stats = method_metric_stats(records, configs)
    order = list(dict.fromkeys(stats.variant))
    stats = stats[stats.metric.isin(metrics)]
    spread = stats["std"] if ci is None else ci_half_width(stats["std"], stats["count"], ci)
    cells = stats.assign(cell=[format_cell(m, s, n, metric) for m, s, n, metric in
                               zip(stats["mean"], spread, stats["count"], stats.metric)])
    table = cells.pivot(index="variant", columns="metric", values="cell")
    table.index.name = "method"
    return table.reindex(index=[v for v in order if v in table.index],
                         columns=[m for m in metrics if m in table.columns]).fillna("")


# What a method reports of its choice (its patch's metadata, unlearnbench/patch.py) -> the units table's column.
CHOICES = {"layer": "layer", "step": "step", "alpha": "alpha", "kept_epoch": "epoch kept"}


def unit_table(records: pd.DataFrame, units: dict[str, dict], metrics: Sequence[str],
               choices: dict[str, dict] | None = None, configs: dict[tuple[str, str], dict] | None = None
               ) -> pd.DataFrame:
    """One row per unit, in the run's order: target, seed, method variant, its value of each of ``metrics``
    (formatted as the summary's cells), whether it met the goal, what its method chose where it says
    (``choices``: unit name -> its patch metadata: layer, step, alpha or the epoch kept) and its runtime."""
    values = labelled_values(records, configs)
    after = values[values.method != ORIGINAL]
    cells = after.pivot_table(index=["method", "config_hash", "target", "seed"], columns="metric", values="value",
                              aggfunc="first")
    variants = dict(zip(zip(after.method, after.config_hash), after.variant))
    shown_metrics = [m for m in metrics if m in cells.columns]
    rows = []
    for name, info in units.items():
        key = (info["method"], info["config_hash"], info["target"], info["seed"])
        if key not in cells.index:
            continue
        unit = cells.loc[key]
        row = {"target": info["target"], "seed": str(info["seed"]), "method": variants[key[:2]]}
        row |= {m: "" if pd.isna(unit[m]) else format_cell(unit[m], float("nan"), 1, m) for m in shown_metrics}
        if GOAL_COLUMN in unit.index and pd.notna(unit[GOAL_COLUMN]):
            row["goal"] = "met" if unit[GOAL_COLUMN] >= 1 else "missed"
        chose = (choices or {}).get(name, {})
        row |= {column: choice_text(chose[key]) for key, column in CHOICES.items() if key in chose}
        if "runtime_s" in unit.index:
            row["runtime_s"] = format_cell(unit["runtime_s"], float("nan"), 1, "runtime_s")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = ["target", "seed", "method", *shown_metrics, "goal", *CHOICES.values(), "runtime_s"]
    return table[[c for c in order if c in table.columns]].set_index("target").fillna("")


def choice_text(value: object) -> str:
    """A method's choice as a cell: a step or alpha in 3 significant digits, anything else as it is."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def ci_half_width(std: pd.Series, count: pd.Series, level: float) -> pd.Series:
    """Half-width of the two-sided t interval of a mean: t_{(1+level)/2, n-1} * std / sqrt(n)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1); got {level}")
    n = count.to_numpy(dtype=float)
    t = scipy_stats.t.ppf((1 + level) / 2, np.maximum(n - 1, 1))
    return pd.Series(np.where(n > 1, t * std.to_numpy() / np.sqrt(n), np.nan), index=std.index)


def format_cell(mean: float, std: float, count: int, metric: str) -> str:
    metric = metric.split(" (")[0]  # a paper table's variant label ("storage_bytes (style)") keeps the format
    metric = metric.split(ATTACK_SEPARATOR)[0]  # and an attack's ("runtime_s|relearn")
    if metric == GOAL_COLUMN:
        return f"{round(mean * count)}/{count}"
    if metric == "storage_bytes":
        return human_bytes(mean)
    if metric in ("forward_samples", "backward_samples"):
        return f"{mean:,.0f}"
    digits = 1 if metric.endswith("_s") else 2
    text = f"{mean:.{digits}f}"
    if count > 1 and pd.notna(std):
        text += f" ± {std:.{digits}f}"
    return text


def human_bytes(n: float) -> str:
    units = ("B", "KB", "MB", "GB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.2f} {units[i]}"


# Cost columns as a table shows them: their cells are formatted (16.00 KB, 1,104), so the header says what
# they count rather than the metric's name with its unit.
COLUMN_NAMES = {"runtime_s": "runtime (s)", "storage_bytes": "storage", "forward_samples": "forward passes",
                "backward_samples": "backward passes"}


def column_name(metric: str) -> str:
    """A column's header: ``runtime_s`` -> ``runtime (s)``, also inside a paper table's ``runtime_s (style)``."""
    return next((metric.replace(k, v, 1) for k, v in COLUMN_NAMES.items() if metric.startswith(k)), metric)


def shown(table: pd.DataFrame, index_name: str) -> pd.DataFrame:
    """The table as writers print it: readable headers, the index as its first column, every cell text."""
    out = table.rename(columns=column_name).rename_axis(index_name).reset_index()
    return out.astype(str)


def alignments(cells: pd.DataFrame) -> tuple[str, ...]:
    """Numbers right (a column whose every cell starts like one: "85.00 ± 7.07", "16.00 KB"), text left."""
    return tuple("right" if i and cells[c].str.match(r"^$|^[-+]?[\d.]").all() else "left"
                 for i, c in enumerate(cells.columns))


def to_markdown(table: pd.DataFrame, index_name: str = "method") -> str:
    cells = shown(table, index_name)
    # tabulate keeps '|' and line breaks as they are; either would break a row.
    cells = cells.apply(lambda column: column.str.replace("|", r"\|", regex=False).str.replace("\n", " ",
                                                                                                regex=False))
    return cells.to_markdown(index=False, colalign=alignments(cells), disable_numparse=True) + "\n"


# Symbols of our cells that LaTeX needs in math mode (pandas escapes LaTeX's own special characters).
LATEX_SYMBOLS = {"±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$"}


def latex_symbols(text: str) -> str:
    for symbol, latex in LATEX_SYMBOLS.items():
        text = text.replace(symbol, latex)
    return text


def latex_escape(text: str) -> str:
    """Text (a table's note, one or more lines) for a LaTeX document, escaped as pandas escapes a table's
    cells: each line a one-column table's row, read back without the tabular around it."""
    lines = str(text).split("\n")
    rows = (pd.DataFrame({"line": lines}).style.hide(axis="index").hide(axis="columns").format(escape="latex")
            .to_latex().splitlines()[1:-1])
    return latex_symbols("\n".join(row.removesuffix(r" \\") for row in rows))


def to_latex(table: pd.DataFrame, index_name: str = "method") -> str:
    cells = shown(table, index_name)
    styler = cells.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return latex_symbols(styler.to_latex(hrules=True, column_format="l" + "r" * (cells.shape[1] - 1)))


def to_terminal(table: pd.DataFrame, index_name: str = "method") -> str:
    cells = shown(table, index_name)
    return tabulate(cells, headers="keys", showindex=False, tablefmt="simple", disable_numparse=True,
                    colalign=alignments(cells))

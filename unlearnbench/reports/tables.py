"""Tables derived from tidy records: a terminal summary and the paper's layouts (Markdown, LaTeX).

Cells are the mean over targets and seeds; with more than one value, ``mean ± std``, or with
``ci`` the half-width of Student's t confidence interval of the mean at that level (scipy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

ORIGINAL = "original"
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


def method_metric_stats(records: pd.DataFrame, configs: dict[tuple[str, str], dict] | None = None) -> pd.DataFrame:
    """Mean, std and count per (method, config hash, metric), with a readable ``variant`` label; the
    base model appears as method ``original``.

    The base model's row comes from the ``before`` stage of one method per (target, seed), so it is
    counted once per target and seed however many methods ran.
    """
    before = records[records.stage == "before"]
    first = before[["method", "config_hash"]].iloc[0].tolist() if len(before) else [None, None]
    original = before[(before.method == first[0]) & (before.config_hash == first[1])]
    original = original.assign(method=ORIGINAL, config_hash="")
    after = records[records.stage == "after"]
    both = pd.concat([original, after], ignore_index=True)
    stats = both.groupby(["method", "config_hash", "metric"], sort=False).value.agg(["mean", "std", "count"])
    stats = stats.reset_index()
    labels = variant_labels(both, configs)
    # A paper table labels each run's metrics ("goal_met (style)"): the goal counts in every run.
    goal = stats[stats.metric.str.split(" (", regex=False).str[0] == GOAL_COLUMN]
    missed = {key for key, mean in goal.groupby(["method", "config_hash"])["mean"].min().items() if mean < 1}
    stats.insert(0, "variant", [labels[(m, h)] + (MISSED if (m, h) in missed else "")
                                for m, h in zip(stats.method, stats.config_hash)])
    return stats


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


def ci_half_width(std: pd.Series, count: pd.Series, level: float) -> pd.Series:
    """Half-width of the two-sided t interval of a mean: t_{(1+level)/2, n-1} * std / sqrt(n)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1); got {level}")
    n = count.to_numpy(dtype=float)
    t = scipy_stats.t.ppf((1 + level) / 2, np.maximum(n - 1, 1))
    return pd.Series(np.where(n > 1, t * std.to_numpy() / np.sqrt(n), np.nan), index=std.index)


def format_cell(mean: float, std: float, count: int, metric: str) -> str:
    metric = metric.split(" (")[0]  # a paper table's variant label ("storage_bytes (style)") keeps the format
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


def to_markdown(table: pd.DataFrame, index_name: str = "method") -> str:
    header = [index_name, *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index, table.itertuples(index=False))]
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_cell(text: str) -> str:
    """A cell that cannot break its row: a model's answer may hold a '|' or a line break."""
    return text.replace("|", r"\|").replace("\r", " ").replace("\n", " ")


def from_markdown(text: str) -> pd.DataFrame:
    """The table ``to_markdown`` wrote, as strings (every column, the index one first); ValueError when
    ``text`` is not such a table (e.g. a row whose answer held an unescaped '|', written before cells
    were escaped)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or not all(line.startswith("|") and line.endswith("|") for line in lines):
        raise ValueError("not a Markdown table")
    header, *rows = [[cell.strip().replace(r"\|", "|") for cell in re.split(r"(?<!\\)\|", line[1:-1])]
                     for line in (lines[0], *lines[2:])]
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"a row of the Markdown table does not have the header's {len(header)} cells")
    return pd.DataFrame(rows, columns=header)


def latex_escape(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$").replace("†", r"$^\dagger$")
            .replace("‡", r"$^\ddagger$"))


def to_latex(table: pd.DataFrame, index_name: str = "method") -> str:
    esc = latex_escape
    cols = "l" + "r" * len(table.columns)
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(esc(c) for c in [index_name, *table.columns]) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in [i, *row]) + r" \\"
              for i, row in zip(table.index, table.itertuples(index=False))]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_terminal(table: pd.DataFrame, index_name: str = "method") -> str:
    header = [index_name, *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index, table.itertuples(index=False))]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])

"""Tables derived from tidy records: a terminal summary and the paper's layouts (Markdown, LaTeX).

Cells are the mean over targets and seeds; with more than one value, ``mean ± std``, or with
``ci`` the half-width of Student's t confidence interval of the mean at that level (scipy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

ORIGINAL = "original"
COST_COLUMNS = ("runtime_s", "storage_bytes", "forward_samples", "backward_samples")


def method_metric_stats(records: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count per (method, metric); the base model appears as method ``original``.

    The base model's row comes from the ``before`` stage of one method per (target, seed), so it is
    counted once per target and seed however many methods ran.
    """
    before = records[records.stage == "before"]
    first_method = before.method.iloc[0] if len(before) else None
    original = before[before.method == first_method].assign(method=ORIGINAL)
    after = records[records.stage == "after"]
    both = pd.concat([original, after], ignore_index=True)
    stats = both.groupby(["method", "metric"], sort=False).value.agg(["mean", "std", "count"])
    return stats.reset_index()


def summary_table(records: pd.DataFrame, metrics: Sequence[str], ci: float | None = None) -> pd.DataFrame:
    """methods x metrics of formatted cells, in run order, the original model first."""
    stats = method_metric_stats(records)
    stats = stats[stats.metric.isin(metrics)]
    spread = stats["std"] if ci is None else ci_half_width(stats["std"], stats["count"], ci)
    cells = stats.assign(cell=[format_cell(m, s, n, metric) for m, s, n, metric in
                               zip(stats["mean"], spread, stats["count"], stats.metric)])
    table = cells.pivot(index="method", columns="metric", values="cell")
    order = [ORIGINAL] + [m for m in dict.fromkeys(records.method) if m != ORIGINAL]
    return table.reindex(index=[m for m in order if m in table.index],
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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, index_name: str = "method") -> str:
    def esc(text: str) -> str:
        return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
                .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$"))

    cols = "l" + "r" * len(table.columns)
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(esc(c) for c in [index_name, *table.columns]) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in [i, *row]) + r" \\" for i, row in zip(table.index, table.itertuples(index=False))]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_terminal(table: pd.DataFrame, index_name: str = "method") -> str:
    header = [index_name, *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index, table.itertuples(index=False))]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])

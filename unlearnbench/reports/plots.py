"""Seaborn figures derived from records and method artifacts, written as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from unlearnbench.reports.tables import MISSED, ORIGINAL, method_metric_stats  # noqa: E402


def slug_layers(layers: pd.DataFrame, path: Path, title: str = "") -> Path:
    """SLUG's layer importance vs gradient alignment per tower, the Pareto front joined, the chosen
    layer marked."""
    towers = sorted(layers.tower.unique())
    fig, axes = plt.subplots(1, len(towers), figsize=(5.2 * len(towers), 4.2), squeeze=False)
    for ax, tower in zip(axes[0], towers):
        sub = layers[layers.tower == tower]
        sns.scatterplot(data=sub, x="alignment", y="importance", hue="on_front", palette={True: "C3", False: "C7"},
                        ax=ax, s=40, legend=False)
        front = sub[sub.on_front].sort_values("alignment")
        ax.plot(front.alignment, front.importance, color="C3", lw=1, label="Pareto front")
        chosen = sub[sub.get("chosen", False) == True]  # noqa: E712 - column of booleans
        if len(chosen):
            ax.scatter(chosen.alignment, chosen.importance, marker="*", s=260, color="gold", edgecolor="k",
                       zorder=5, label=f"chosen: {chosen.layer.iloc[0]}")
        for _, row in front.iterrows():
            ax.annotate(short_layer(row.layer), (row.alignment, row.importance), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(title=f"{tower} tower", xlabel="|cos(g_forget, g_retain)| (alignment)",
               ylabel="||g_forget|| / ||W|| (importance)", yscale="log")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title or "SLUG layer selection")
    return save(fig, path)


def forget_vs_retain(records: pd.DataFrame, forget_metric: str, retain_metric: str, path: Path,
                     higher_is_better: dict[str, bool] | None = None) -> Path:
    """One point per method variant (mean over targets and seeds): forgetting on x, retention on y.
    Axis labels take each metric's direction from ``higher_is_better`` (the suite's metric metadata);
    variants that missed the goal are drawn hollow; points that coincide share one label."""
    stats = method_metric_stats(records)
    wide = stats.pivot(index="variant", columns="metric", values="mean").reset_index()
    wide = wide.dropna(subset=[forget_metric, retain_metric])
    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    for i, (_, row) in enumerate(wide.iterrows()):
        missed = row.variant.endswith(MISSED)
        ax.scatter(row[forget_metric], row[retain_metric], s=110,
                   marker="os^Dvp<>h*"[i % 10], color="none" if missed else f"C{i % 10}", edgecolor=f"C{i % 10}",
                   linewidth=1.6, label=row.variant)
    points = wide.groupby([forget_metric, retain_metric], sort=False).variant.agg(" = ".join)
    for (x, y), names in points.items():
        ax.annotate(names, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    directions = higher_is_better or {}
    forget_dir = "higher" if directions.get(forget_metric, False) else "lower"
    retain_dir = "higher" if directions.get(retain_metric, True) else "lower"
    ax.set(xlabel=f"{forget_metric} ({forget_dir} = more forgotten)",
           ylabel=f"{retain_metric} ({retain_dir} = better kept)",
           title=f"Forgetting vs retention ({ORIGINAL} = before unlearning)", xlim=(-3, 103), ylim=(-3, 103))
    ax.legend(fontsize=7, title="hollow: missed the goal" if wide.variant.str.endswith(MISSED).any() else None,
              title_fontsize=7)
    return save(fig, path)


def cost_bars(records: pd.DataFrame, path: Path) -> Path | None:
    """Runtime, storage and sample passes per method variant on log scales."""
    stats = method_metric_stats(records)
    metrics = ["runtime_s", "storage_bytes", "forward_samples", "backward_samples"]
    # Zero costs (noop) have no place on a log scale; they show as missing bars.
    data = stats[stats.metric.isin(metrics) & (stats.method != ORIGINAL) & (stats["mean"] > 0)]
    if data.empty:
        return None
    present = [m for m in metrics if m in set(data.metric)]
    grid = sns.catplot(data=data, x="variant", y="mean", col="metric", col_order=present, kind="bar",
                       order=list(dict.fromkeys(stats.variant[stats.method != ORIGINAL])),
                       sharey=False, height=3.2, aspect=0.9)
    for ax in grid.axes.flat:
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=45)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("", "")
    return save(grid.figure, path)


def short_layer(name: str) -> str:
    return (name.replace("visual.transformer.resblocks.", "v").replace("transformer.resblocks.", "t")
            .replace(".attn.", ".").replace(".mlp.", ".").replace("_weight", "").replace(".weight", ""))


def save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

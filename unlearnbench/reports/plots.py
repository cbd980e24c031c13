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
    variants that missed the goal are drawn hollow; points that (nearly) coincide share one label."""
    stats = method_metric_stats(records)
    order = list(dict.fromkeys(stats.variant))  # the original model first, then the run's order
    wide = stats.pivot(index="variant", columns="metric", values="mean").reindex(order).reset_index()
    wide = wide.dropna(subset=[forget_metric, retain_metric])
    fig, ax = plt.subplots(figsize=(5.8, 4.4))
    for i, (_, row) in enumerate(wide.iterrows()):
        missed = row.variant.endswith(MISSED)
        # Hollow markers on top: a variant that missed the goal stays visible over the original it equals.
        ax.scatter(row[forget_metric], row[retain_metric], s=110, zorder=3 if missed else 2,
                   marker="os^Dvp<>h*"[i % 10], color="none" if missed else f"C{i % 10}", edgecolor=f"C{i % 10}",
                   linewidth=1.6, label=row.variant)
    for names, x, y in shared_labels(wide, forget_metric, retain_metric):
        right = x > 60  # a label right of a point near the right edge would leave the axes
        ax.annotate(", ".join(names), (x, y), fontsize=8, xytext=(-6 if right else 6, 5),
                    textcoords="offset points", ha="right" if right else "left")
    directions = higher_is_better or {}
    ax.set(xlabel=axis_label(forget_metric, directions.get(forget_metric, False), "more forgotten"),
           ylabel=axis_label(retain_metric, directions.get(retain_metric, True), "better kept"),
           title=f"Forgetting vs retention ({ORIGINAL} = before unlearning)", xlim=(-3, 103), ylim=(-3, 103))
    handles, labels = ax.get_legend_handles_labels()
    by_order = sorted(zip(labels, handles), key=lambda item: order.index(item[0]))
    ax.legend([h for _, h in by_order], [label for label, _ in by_order], fontsize=7, title_fontsize=7,
              title="hollow: missed the goal" if wide.variant.str.endswith(MISSED).any() else None)
    return save(fig, path)


# Points closer than this (in points of the 0-100 axes) share one label: two labels that close overlap.
LABEL_RADIUS = 3.0


def shared_labels(wide: pd.DataFrame, x_metric: str, y_metric: str) -> list[tuple[list[str], float, float]]:
    """Variants grouped by where they sit: each group's names (in ``wide``'s order) and the position of
    its first member; a variant joins the first group within ``LABEL_RADIUS`` on both axes."""
    groups: list[tuple[list[str], float, float]] = []
    for variant, x, y in zip(wide.variant, wide[x_metric], wide[y_metric]):
        group = next((g for g in groups if abs(g[1] - x) <= LABEL_RADIUS and abs(g[2] - y) <= LABEL_RADIUS), None)
        if group is None:
            groups.append(([variant], x, y))
        else:
            group[0].append(variant)
    return groups


def axis_label(metric: str, higher_is_better: bool, good: str) -> str:
    """``FA@1 ↓ (lower = more forgotten)``: which way along the axis is ``good``."""
    return f"{metric} {direction_arrow(higher_is_better)} ({'higher' if higher_is_better else 'lower'} = {good})"


def direction_arrow(higher_is_better: bool | None) -> str:
    """↑ where higher is better, ↓ where lower is, nothing where a metric has no direction."""
    return "" if higher_is_better is None else "↑" if higher_is_better else "↓"


def slug_search(trace: pd.DataFrame, forget_metric: str, retain_metric: str, path: Path, title: str = "",
                higher_is_better: dict[str, bool] | None = None, chosen_layer: str | None = None) -> Path:
    """SLUG's step search per front layer: the forget and the retain validation score of every step it
    tried (retention is scored only for steps that forget); filled points met the goal."""
    directions = higher_is_better or {}
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for i, (layer, trials) in enumerate(trace.groupby("layer", sort=False)):
        trials = trials.sort_values("step")
        chosen = layer == chosen_layer
        for ax, metric in zip(axes, (forget_metric, retain_metric)):
            scored = trials.dropna(subset=[metric]) if metric in trials else trials.iloc[:0]
            if scored.empty:  # retention is scored only for steps that forget: none may have
                continue
            ax.plot(scored.step, scored[metric], color=f"C{i % 10}", lw=2.2 if chosen else 1, marker="",
                    label=short_layer(layer) + (" (chosen)" if chosen else ""))
            met = scored.met.astype(bool)
            ax.scatter(scored.step[met], scored[metric][met], color=f"C{i % 10}", s=22, zorder=3)
            ax.scatter(scored.step[~met], scored[metric][~met], color="none", edgecolor=f"C{i % 10}", s=22, zorder=3)
    for ax, metric, good in zip(axes, (forget_metric, retain_metric), ("more forgotten", "better kept")):
        ax.set(xscale="log" if ax.has_data() else "linear", xlabel="step size λ", title=f"{metric} on validation",
               ylabel=axis_label(metric, directions.get(metric, good == "better kept"), good))
        if not ax.has_data():
            ax.text(0.5, 0.5, "no step forgot the target:\nnothing scored", ha="center", va="center",
                    transform=ax.transAxes)
    next((ax for ax in axes[::-1] if ax.has_data()), axes[0]).legend(
        fontsize=7, loc="best", title="filled: met the goal", title_fontsize=7)
    fig.suptitle(title or "SLUG step search")
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

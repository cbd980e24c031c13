"""Seaborn figures derived from records and method artifacts, written as PNG.

Figures must not mislead: costs on linear axes from zero with their values written on the bars, every
trial of a search drawn (one that exited early or was not scored is marked as such, never dropped),
axes named in words from the run's metric metadata (``about``), and legends outside the axes so they
cover no point. Points a test must find are drawn with ``gid="trials"`` or ``gid="units"``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from unlearnbench.cache import atomic_write  # noqa: E402
from unlearnbench.reports.tables import MISSED, ORIGINAL, format_cell, human_bytes, labelled_values  # noqa: E402

MARKERS = "os^Dvp<>h*"


def slug_layers(layers: pd.DataFrame, path: Path, title: str = "") -> Path:
    """SLUG's layer importance vs gradient alignment per tower, the Pareto front joined, the chosen
    layer marked; the legend sits below the axes."""
    towers = sorted(layers.tower.unique())
    width = 5.2 * len(towers)
    fig, axes = plt.subplots(1, len(towers), figsize=(width, 4.6), squeeze=False, layout="constrained")
    for ax, tower in zip(axes[0], towers):
        sub = layers[layers.tower == tower]
        sns.scatterplot(data=sub, x="alignment", y="importance", hue="on_front", palette={True: "C3", False: "C7"},
                        ax=ax, s=40, legend=False)
        front = sub[sub.on_front].sort_values("alignment")
        ax.plot(front.alignment, front.importance, color="C3", lw=1, label="Pareto front")
        chosen = sub[sub.get("chosen", False) == True]  # noqa: E712 - column of booleans
        if len(chosen):
            ax.scatter(chosen.alignment, chosen.importance, marker="*", s=260, color="gold", edgecolor="k",
                       zorder=5, label=f"chosen: {short_layer(chosen.layer.iloc[0])}", gid="chosen")
        for _, row in front.iterrows():
            ax.annotate(short_layer(row.layer), (row.alignment, row.importance), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(title=f"{tower} tower", xlabel="|cos(g_forget, g_retain)| (alignment)",
               ylabel="||g_forget|| / ||W|| (importance)", yscale="log")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    suptitle(fig, title or "SLUG layer selection", width)
    return save(fig, path)


def forget_vs_retain(records: pd.DataFrame, forget_metric: str, retain_metric: str, path: Path,
                     metrics: dict[str, dict] | None = None) -> Path:
    """One point per method variant (mean over targets and seeds, with ± std error bars) over a small point
    per unit (target and seed); forgetting on x, retention on y. Axis labels take each metric's direction
    and description from ``metrics`` (the run's metric metadata); variants that missed the goal are drawn
    hollow; means that (nearly) coincide share one label."""
    values = labelled_values(records)
    values = values[values.metric.isin([forget_metric, retain_metric])]
    units = (values.pivot_table(index=["variant", "target", "seed"], columns="metric", values="value",
                                aggfunc="first", sort=False)
             .dropna(subset=[forget_metric, retain_metric]).reset_index())
    order = list(dict.fromkeys(units.variant))  # the original model first, then the run's order
    stats = units.groupby("variant", sort=False)[[forget_metric, retain_metric]].agg(["mean", "std"])
    wide = pd.DataFrame({"variant": order, forget_metric: [stats.loc[v, (forget_metric, "mean")] for v in order],
                         retain_metric: [stats.loc[v, (retain_metric, "mean")] for v in order]})
    fig, ax = plt.subplots(figsize=(7.6, 4.8), layout="constrained")
    for i, variant in enumerate(order):
        colour, marker, missed = f"C{i % 10}", MARKERS[i % 10], variant.endswith(MISSED)
        mine = units[units.variant == variant]
        ax.scatter(mine[forget_metric], mine[retain_metric], s=18, marker=marker, color=colour, alpha=0.35,
                   linewidth=0, zorder=1, gid="units")
        x, y = stats.loc[variant, (forget_metric, "mean")], stats.loc[variant, (retain_metric, "mean")]
        ax.errorbar(x, y, xerr=np.nan_to_num(stats.loc[variant, (forget_metric, "std")]),
                    yerr=np.nan_to_num(stats.loc[variant, (retain_metric, "std")]), color=colour, lw=1, capsize=3,
                    zorder=2, fmt="none")
        # Hollow markers on top: a variant that missed the goal stays visible over the original it equals.
        ax.scatter(x, y, s=110, zorder=4 if missed else 3, marker=marker, color="none" if missed else colour,
                   edgecolor=colour, linewidth=1.6, label=variant)
    for names, x, y in shared_labels(wide, forget_metric, retain_metric):
        right = x > 60  # a label right of a point near the right edge would leave the axes
        ax.annotate(", ".join(names), (x, y), fontsize=8, xytext=(-6 if right else 6, 5),
                    textcoords="offset points", ha="right" if right else "left")
    meta = metrics or {}
    ax.set(xlabel=axis_label(forget_metric, meta.get(forget_metric), "more forgotten", higher=False),
           ylabel=axis_label(retain_metric, meta.get(retain_metric), "better kept", higher=True),
           title=f"Forgetting vs retention ({ORIGINAL} = before unlearning)", xlim=(-3, 103), ylim=(-3, 103))
    notes = ["large: mean over units, bars ± std", "small: one unit (target, seed)"]
    if wide.variant.str.endswith(MISSED).any():
        notes.append("hollow: missed the goal")
    ax.legend(fontsize=7, title_fontsize=7, title="\n".join(notes), loc="upper left", bbox_to_anchor=(1.02, 1))
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


def axis_label(metric: str, meta: dict | None, good: str, higher: bool, where: str = "") -> str:
    """``FA@1 ↓ (lower = more forgotten)`` and, on a second line, what the metric measures: its direction
    and words from the run's metric metadata ``meta`` (``higher`` where the run does not say)."""
    meta = meta or {}
    better = meta.get("higher_is_better", higher)
    head = f"{metric}{' ' + where if where else ''} {direction_arrow(better)} " \
           f"({'higher' if better else 'lower'} = {good})"
    about = meta.get("about") or ""
    return head + ("\n" + textwrap.fill(about, 46) if about else "")


def direction_arrow(higher_is_better: bool | None) -> str:
    """↑ where higher is better, ↓ where lower is, nothing where a metric has no direction."""
    return "" if higher_is_better is None else "↑" if higher_is_better else "↓"


def step_search(trace: pd.DataFrame, forget_metric: str, retain_metric: str, path: Path, title: str = "",
                metrics: dict[str, dict] | None = None, chosen: tuple[str | None, float] | None = None,
                threshold: float | None = None, method: str = "SLUG") -> Path:
    """A step search (SLUG's per front layer, SSD's over 1/alpha): the forget and the retain validation score
    of every trial. Filled points met the goal, hollow ones did not; a trial that exited early (its forget
    score not computed) is an ×, at the share of the images it saw that were still recognised where the trace
    says, else in a grey band above the scores; a trial whose retention was not scored (it did not forget) is
    an × in a grey band below them. ``chosen``: (layer, step) of the step applied, starred; ``threshold``: the
    goal's line."""
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), layout="constrained")
    groups = trace.groupby("layer", sort=False) if "layer" in trace else [(None, trace)]
    handles = []
    unscored_points: dict[int, list[tuple[pd.Series, str]]] = {0: [], 1: []}  # panel -> (steps, colour)
    for i, (layer, trials) in enumerate(groups):
        trials = trials.sort_values("step")
        colour = f"C{i % 10}"
        is_chosen = chosen is not None and (layer is None or layer == chosen[0])
        met = trials.met.astype(bool) if "met" in trials else pd.Series(False, index=trials.index)
        for ax, metric in zip(axes, (forget_metric, retain_metric)):
            value = trials[metric] if metric in trials else pd.Series(np.nan, index=trials.index)
            scored = value.notna()
            line, = ax.plot(trials.step[scored], value[scored], color=colour, lw=2.2 if is_chosen else 1,
                            label=(short_layer(layer) if layer else method) + (" (chosen)" if is_chosen else ""))
            ax.scatter(trials.step[scored & met], value[scored & met], color=colour, s=24, zorder=3, gid="trials")
            ax.scatter(trials.step[scored & ~met], value[scored & ~met], color="none", edgecolor=colour, s=24,
                       zorder=3, gid="trials")
            unscored = trials[~scored]
            if metric == forget_metric and {"target_hits", "target_images"} <= set(trials.columns):
                seen = 100 * unscored.target_hits / unscored.target_images.clip(lower=1)
                ax.scatter(unscored.step, seen, marker="x", color=colour, s=36, zorder=3, gid="trials")
            else:  # in a band of their own, once the scored points have set the axis
                unscored_points[0 if metric == forget_metric else 1].append((unscored.step, colour))
            if is_chosen and metric in trials:
                at = trials[np.isclose(trials.step, chosen[1]) & trials[metric].notna()]
                ax.scatter(at.step, at[metric], marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                           gid="chosen")
        handles.append(line)
    for panel, points in unscored_points.items():
        unscored_band(axes[panel], points, top=panel == 0)
    meta = metrics or {}
    for ax, metric, good, higher in zip(axes, (forget_metric, retain_metric), ("more forgotten", "better kept"),
                                        (False, True)):
        # An empty panel (no step forgot, so retention was never scored) has nothing for a log scale.
        ax.set(xscale="log" if ax.has_data() else "linear",
               xlabel="step size λ" if method == "SLUG" else "step (1 / alpha)",
               ylabel=axis_label(metric, meta.get(metric), good, higher, where="on validation"))
        if not ax.has_data():
            ax.text(0.5, 0.5, "no step forgot the target:\nnothing scored", ha="center", va="center",
                    transform=ax.transAxes)
    if threshold is not None:
        handles.append(axes[0].axhline(threshold, color="k", lw=0.8, ls="--", label=f"goal: ≤ {threshold:g}"))
    handles += marker_key(trace, forget_metric, retain_metric)
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    suptitle(fig, title or f"{method} step search", 11.5)
    return save(fig, path)


def unscored_band(ax: plt.Axes, points: list[tuple[pd.Series, str]], top: bool = False) -> None:
    """Trials (or epochs) with no score on this panel, as × in a grey band beyond the scored values (above them
    for a forget score, below for a retain score), so no × can be read as a value; the legend says so."""
    if not any(len(steps) for steps, _ in points):
        return
    low, high = ax.get_ylim()
    span = (high - low) or 1.0
    band = (high + 0.03 * span, high + 0.17 * span) if top else (low - 0.17 * span, low - 0.03 * span)
    ax.axhspan(*band, color="0.9", zorder=0)
    ax.set_ylim(min(low, band[0]), max(high, band[1]))
    middle = (band[0] + band[1]) / 2
    for steps, colour in points:
        ax.scatter(steps, [middle] * len(steps), marker="x", color=colour, s=36, zorder=3, gid="trials")


def marker_key(trace: pd.DataFrame, forget_metric: str, retain_metric: str) -> list:
    """Legend entries saying what the markers of a search or epoch plot mean (only those drawn)."""
    from matplotlib.lines import Line2D

    def key(marker, face, text):
        return Line2D([], [], marker=marker, color="k", markerfacecolor=face, ls="", label=text)

    entries = [key("o", "k", "met the goal"), key("o", "none", "did not meet it")]
    if forget_metric in trace and trace[forget_metric].isna().any():
        early = ("exited early: × at the share\nof its images still recognised" if "target_hits" in trace
                 else "exited early (× in the grey band)")
        entries.append(key("x", "k", early))
    if retain_metric not in trace or trace[retain_metric].isna().any():
        entries.append(key("x", "k", "retention not scored\n(× in the grey band)"))
    entries.append(key("*", "gold", "applied"))
    return entries


def epoch_trace(trace: pd.DataFrame, forget_metric: str, retain_metric: str, path: Path, title: str = "",
                metrics: dict[str, dict] | None = None, threshold: float | None = None) -> Path:
    """An iterative method's epochs: forget and retain validation scores (retention is scored only for
    epochs that forget: × in a grey band below elsewhere) and its training losses; the epoch kept is starred."""
    losses = [c for c in trace.columns if c.startswith("loss")]
    panels = [forget_metric, retain_metric, *(["losses"] if losses else [])]
    width = 4.3 * len(panels) + 1.8
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.0), layout="constrained", sharex=True)
    met = trace.met.astype(bool) if "met" in trace else pd.Series(False, index=trace.index)
    kept = trace.kept.astype(bool) if "kept" in trace else pd.Series(False, index=trace.index)
    meta = metrics or {}
    for ax, metric, good, higher in zip(axes, (forget_metric, retain_metric), ("more forgotten", "better kept"),
                                        (False, True)):
        value = trace[metric] if metric in trace else pd.Series(np.nan, index=trace.index)
        scored = value.notna()
        ax.plot(trace.epoch[scored], value[scored], color="C0", lw=1)
        ax.scatter(trace.epoch[scored & met], value[scored & met], color="C0", s=26, zorder=3, gid="trials")
        ax.scatter(trace.epoch[scored & ~met], value[scored & ~met], color="none", edgecolor="C0", s=26, zorder=3,
                   gid="trials")
        ax.scatter(trace.epoch[kept & scored], value[kept & scored], marker="*", s=220, color="gold", edgecolor="k",
                   zorder=5, gid="chosen")
        unscored_band(ax, [(trace.epoch[~scored], "C0")], top=metric == forget_metric)
        ax.set(xlabel="epoch", ylabel=axis_label(metric, meta.get(metric), good, higher, where="on validation"))
        ax.xaxis.get_major_locator().set_params(integer=True)
    if threshold is not None:
        axes[0].axhline(threshold, color="k", lw=0.8, ls="--", label=f"goal: ≤ {threshold:g}")
    if losses:
        for j, column in enumerate(losses):
            axes[-1].plot(trace.epoch, trace[column], marker=".", color=f"C{j + 1}", label=column)
        axes[-1].set(xlabel="epoch", ylabel="mean training loss of the epoch")
        axes[-1].xaxis.get_major_locator().set_params(integer=True)
    handles = [*axes[0].get_legend_handles_labels()[0], *(axes[-1].get_legend_handles_labels()[0] if losses else []),
               *marker_key(trace, forget_metric, retain_metric)]
    fig.legend(handles=[h for h in handles if not h.get_label().startswith("_")], fontsize=7,
               loc="outside right upper")
    suptitle(fig, title or "epochs", width)
    return save(fig, path)


def iteration_losses(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """A method's per-iteration training loss (ESD's), with its running mean over 10 iterations."""
    fig, ax = plt.subplots(figsize=(7.5, 3.4), layout="constrained")
    ax.plot(table.iteration, table.loss, color="C0", lw=0.6, alpha=0.5, label="loss")
    ax.plot(table.iteration, table.loss.rolling(10, min_periods=1).mean(), color="C0", lw=1.6,
            label="running mean (10)")
    ax.set(xlabel="iteration", ylabel="training loss")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    suptitle(fig, title or "iterations", 7.5)
    return save(fig, path)


# Cost panels: metric -> title. Bars on linear axes from zero, so lengths compare as the numbers do.
COST_PANELS = {"runtime_s": "runtime (s)", "storage_bytes": "patch storage",
               "forward_samples": "forward sample passes", "backward_samples": "backward sample passes"}


def cost_bars(records: pd.DataFrame, path: Path) -> Path | None:
    """Runtime, storage and sample passes per method variant on linear axes from zero: bars are the mean
    over units, lines ± std, each bar's value written on it (a method that costs nothing: a flat bar, "0")."""
    values = labelled_values(records)
    data = values[values.metric.isin(list(COST_PANELS)) & (values.method != ORIGINAL)]
    if data.empty:
        return None
    order = list(dict.fromkeys(data.variant))
    present = [m for m in COST_PANELS if m in set(data.metric)]
    width = 3.3 * len(present)
    fig, axes = plt.subplots(1, len(present), figsize=(width, 3.9), squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], present):
        sub = data[data.metric == metric]
        scale, unit = byte_scale(sub.value.max()) if metric == "storage_bytes" else (1.0, "")
        sns.barplot(data=sub.assign(value=sub.value / scale), x="variant", y="value", order=order, errorbar="sd",
                    capsize=0.2, err_kws={"linewidth": 1}, color="C0", ax=ax)
        spread = sub.groupby("variant", sort=False).value.agg(["mean", "std"]).reindex(order)
        # Each label above its bar's error line, so neither hides the other.
        tops = (spread["mean"] + spread["std"].fillna(0)) / scale
        for i, (top, mean) in enumerate(zip(tops, spread["mean"])):
            ax.annotate(cost_text(mean, metric), (i, 0 if pd.isna(top) else top), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("linear")
        ax.set_ylim(bottom=0)
        ax.margins(y=0.18)  # room for the labels above the tallest bar
        ax.set(title=COST_PANELS[metric], xlabel="", ylabel=unit)
        ax.tick_params(axis="x", rotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    suptitle(fig, "Costs per method: mean over units (lines ± std), linear axes from zero", width)
    return save(fig, path)


def byte_scale(largest: float) -> tuple[float, str]:
    """The power of 1024 and its unit that show byte counts up to ``largest`` as numbers people read."""
    for power, unit in ((3, "GB"), (2, "MB"), (1, "KB")):
        if largest >= 1024 ** power:
            return 1024.0 ** power, unit
    return 1.0, "bytes"


def cost_text(mean: float, metric: str) -> str:
    """A cost bar's label, as the table writes the cell (16.00 KB, 1,104, 3.0)."""
    if pd.isna(mean):
        return ""
    return human_bytes(mean) if metric == "storage_bytes" else format_cell(mean, np.nan, 1, metric)


def sample_grid(before: np.ndarray, after: np.ndarray, rows: tuple[str, ...], columns: tuple[str, ...],
                marked: int | None, path: Path, title: str = "") -> Path:
    """A generative suite's samples before | after unlearning: one image per (row, column) prompt, each row
    and column labelled, the target's row framed in red and its label marked."""
    height, width = before.shape[:2]
    cell_h, cell_w = height / len(rows), width / len(columns)
    size = max(6.0, 0.5 * len(columns))  # each panel's width in inches, beside room for its row labels
    fig_width = 2 * (size + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(fig_width, size * height / width + 1.8), layout="constrained")
    for ax, image, name in zip(axes, (before, after), ("before unlearning", "after unlearning")):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([(i + 0.5) * cell_w - 0.5 for i in range(len(columns))], columns, rotation=60, ha="right",
                      fontsize=7)
        ax.set_yticks([(i + 0.5) * cell_h - 0.5 for i in range(len(rows))],
                      [f"▶ {row} (target)" if i == marked else row for i, row in enumerate(rows)], fontsize=7)
        ax.set_title(name, fontsize=10)
        if marked is not None:
            ax.add_patch(Rectangle((-0.5, marked * cell_h - 0.5), width, cell_h, fill=False, edgecolor="red", lw=2.2,
                                   gid="target"))
            ax.get_yticklabels()[marked].set(color="red", fontweight="bold")
    suptitle(fig, title or "Samples before | after unlearning", fig_width)
    return save(fig, path)


def suptitle(fig: plt.Figure, title: str, width_inches: float) -> None:
    """A figure title wrapped to the figure's width, so no side of it is cut off."""
    fig.suptitle(textwrap.fill(title, max(20, int(width_inches * 9.5))), fontsize=11)


def short_layer(name: str) -> str:
    """``visual.transformer.resblocks.1.attn.out_proj.weight`` -> ``v1.out_proj``; a transformers layer
    (``model.vision_tower.encoder.layers.0.self_attn.v_proj.weight``) -> ``v0.v_proj`` (``t`` in a text model)."""
    block = re.search(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+?)(?:\.weight)?$", name)
    if block:
        return f"{'v' if 'vision' in name else 't' if 'text' in name else 'L'}{block[1]}.{block[2]}"
    return (name.replace("visual.transformer.resblocks.", "v").replace("transformer.resblocks.", "t")
            .replace(".attn.", ".").replace(".mlp.", ".").replace("_weight", "").replace(".weight", ""))


def save(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (a reader never sees half a figure) and close it."""
    path = Path(path)
    try:
        # bbox "tight": what the layout could not fit (a long tick label) widens the PNG instead of being cut.
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", pad_inches=0.1))
    finally:
        plt.close(fig)
    return path


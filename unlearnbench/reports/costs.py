"""``bench.py costs RUN``: each unit's sample passes per model component, and with ``--real-scale`` its
runtime projected to the real models (``unlearnbench/passes.py``, ``unlearnbench/real_scale.py``)."""

from __future__ import annotations

import pandas as pd

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.real_scale import PassTime, project


def unit_passes(result) -> pd.DataFrame:
    """Long table of a stored run: one row per (method, target, seed, component) with its sample passes."""
    frames = []
    for name, unit in result.manifest["units"].items():
        table = result.artifacts.get(f"{name}/passes")
        if table is None:
            continue
        frames.append(table.assign(method=unit["method"], target=unit["target"], seed=unit["seed"], unit=name))
    if not frames:
        raise UnlearnBenchError(f"RUN {result.run_dir}: no unit has pass counts (artifacts/*__passes.parquet); "
                                "runs computed before pass counting existed: rerun it")
    return pd.concat(frames, ignore_index=True)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:.2f}"


def cost_table(result, times: dict[str, PassTime] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table per unit, long table per component). The per-unit table: measured runtime, each component's
    passes at the real protocol's steps as ``forward / backward``, and with ``times`` the projected
    real-scale seconds (all passes, and without the base model's validation, which the harness runs for
    every method and papers leave out) with their ratios to SLUG's on the same target, and for methods
    with a floor (``floor_s`` in their records: SLUG's gradient passes plus one validation) ``x_floor``,
    the projected runtime over the projected floor: ``runtime_over_floor`` at real scale."""
    passes = unit_passes(result)
    records = result.records
    after = records[records.stage == "after"]
    runtime = after[after.metric == "runtime_s"].set_index(["method", "target", "seed"]).value
    floors = after[after.metric == "floor_s"].set_index(["method", "target", "seed"]).value
    if times is not None:
        projected = pd.concat([project(group, times).assign(unit=unit) for unit, group in passes.groupby("unit")],
                              ignore_index=True)
        passes = passes.merge(projected[["unit", "component", "phase", "forward_s", "backward_s", "seconds"]],
                              on=["unit", "component", "phase"])
    rows, x_floor = [], {}
    for (method, target, seed), group in passes.groupby(["method", "target", "seed"], sort=False):
        row = {"method": method, "target": target, "seed": seed,
               "runtime_s": runtime.get((method, target, seed), float("nan"))}
        for component, item in group.groupby("component")[["real_forward", "real_backward"]].sum().iterrows():
            row[component] = f"{_fmt(item.real_forward)} / {_fmt(item.real_backward)}"
        if times is not None:
            row["real_scale_s"] = group.seconds.sum()
            row["without_base_val_s"] = group[group.phase != "base_validation"].seconds.sum()
            # A method with a floor (SLUG's: its precompute phase + the base validation), in a unit whose passes
            # keep the precompute phase apart (units stored before they did cannot tell their floor).
            if (method, target, seed) in floors.index and "precompute" in set(group.phase):
                floor = group[group.phase.isin(["precompute", "base_validation"])].seconds.sum()
                x_floor[method, target, seed] = row["real_scale_s"] / floor
        rows.append(row)
    table = pd.DataFrame(rows)
    components = [c for c in table.columns
                  if c not in ("method", "target", "seed", "runtime_s", "real_scale_s", "without_base_val_s")]
    table[components] = table[components].fillna("0 / 0")
    if times is not None:
        for column, ratio in (("real_scale_s", "x_slug"), ("without_base_val_s", "x_slug_without")):
            slug = table[table.method == "slug"].set_index(["target", "seed"])[column]
            table[ratio] = [getattr(r, column) / slug[(r.target, r.seed)] if (r.target, r.seed) in slug.index
                            else float("nan") for r in table.itertuples()]
        if x_floor:  # last: it compares a unit with its own floor, not with SLUG
            table["x_floor"] = [x_floor.get((r.method, r.target, r.seed), float("nan")) for r in table.itertuples()]
    return table, passes

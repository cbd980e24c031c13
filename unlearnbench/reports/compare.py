"""``bench.py compare BASE NEW``: did anything move the wrong way between two runs?

Units are paired by method name, target and seed, whatever the settings; per (method, metric), over the
units both runs have: the mean of each run, the difference, the metric's direction and tolerance (from
the package's metric declarations: the suite's ``metrics`` and ``records.GOAL_METRICS`` /
``COST_METRICS``; a metric the package does not declare takes BASE's manifest's, and a manifest that
disagrees is named, never followed), and with at least two units on each side Welch's t-test p-value
(scipy). The gate fails (``--fail-on-regression``) when

- a gated metric moved the wrong way by more than its tolerance, or is NaN or missing in NEW for a unit
  where BASE had a number (NaN compares false with everything, so it would otherwise pass);
- a method, target or seed of BASE is absent from NEW;
- a method's settings or the suite's settings differ (shown as a diff), unless ``--allow-config-change``.

Metrics without a tolerance (timings, memory, counts) are shown but never gated unless ``--tolerance``
names them. The base model's rows appear as method ``original``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from unlearnbench import records as rec
from unlearnbench.config import as_text
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports.tables import ORIGINAL, human_bytes, loaded_note, variant_labels

KEYS = ["method", "metric"]
UNIT = ["method", "target", "seed"]
MISSING = "missing in NEW"
STATUSES = (MISSING, "regressed", "improved", "within tolerance", "not gated")
FAILING = (MISSING, "regressed")


@dataclass
class StoredRun:
    """A run's records and manifest, from a run folder or a records file with manifest.json beside it."""

    path: Path
    records: pd.DataFrame
    manifest: dict

    @classmethod
    def load(cls, path: str | Path, role: str) -> StoredRun:
        path = Path(path)
        if not path.exists():
            raise UnlearnBenchError(f"{role} {path}: no such run folder or records file")
        folder = path if path.is_dir() else path.parent
        records_file = path / "records.parquet" if path.is_dir() else path
        manifest_file = folder / "manifest.json"
        for needed in (records_file, manifest_file):
            if not needed.is_file():
                raise UnlearnBenchError(f"{role} {path}: no {needed.name} at {needed}; give a run folder "
                                        "(runs/<run-id>) or its records.parquet")
        try:
            manifest = json.loads(manifest_file.read_text())
            records = rec.read(records_file)
        except (OSError, ValueError) as err:
            raise UnlearnBenchError(f"{role} {path}: unreadable ({err}); rerun it to rewrite its files") from None
        if "metrics" not in manifest:
            raise UnlearnBenchError(f"{role} {path}: its manifest has no metric directions (written by an older "
                                    "unlearnbench); rerun it with this version")
        return cls(folder, records, manifest)

    def configs(self) -> dict[tuple[str, str], dict]:
        return {(m.get("method", name), m["config_hash"]): m["config"] for name, m in self.manifest["methods"].items()}

    def labelled(self) -> pd.DataFrame:
        """The records with each method named by its variant label: its name where the run holds one
        configuration of it, so a changed setting pairs with the old one (and is reported as changed);
        name and settings for the variants of a ``--method-set`` sweep, which pair variant by variant."""
        labels = variant_labels(self.records, self.configs())
        return self.records.assign(method=[labels[key] for key in zip(self.records.method, self.records.config_hash)])


def unit_values(records: pd.DataFrame) -> pd.DataFrame:
    """One value per (method, metric, target, seed); the base model as ``original``."""
    after = records[records.stage == "after"]
    before = records[records.stage == "before"].drop_duplicates(["target", "seed", "metric"])
    before = before.assign(method=ORIGINAL)
    return pd.concat([before, after], ignore_index=True)[[*KEYS, "target", "seed", "value"]]


@dataclass
class Comparison:
    """What ``bench.py compare`` prints: metric rows, what fails the gate besides them, and notes."""

    rows: pd.DataFrame  # one row per (method, metric) with its status (compare_runs)
    failures: list[str] = field(default_factory=list)  # units missing in NEW; settings changed (unless allowed)
    notes: list[str] = field(default_factory=list)  # what else differs, not gated

    @property
    def failed(self) -> bool:
        return bool(self.failures) or not regressions(self.rows).empty


def compare(base: StoredRun, new: StoredRun, tolerances: dict[str, float] | None = None,
            allow_config_change: bool = False) -> Comparison:
    """The whole comparison: metrics, missing units, settings changes and notes."""
    rows = compare_runs(base, new, tolerances)
    changes = settings_changes(base, new)
    failures = missing_in_new(base, new)
    notes = differences(base, new)
    if allow_config_change:
        notes = [f"{change} (allowed: --allow-config-change)" for change in changes] + notes
    else:
        failures += [f"{change}; give --allow-config-change to compare the metrics alone" for change in changes]
    return Comparison(rows, failures, notes)


def compare_runs(base: StoredRun, new: StoredRun, tolerances: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (method, metric) of BASE over the (method, target, seed) units both runs have."""
    if base.manifest["suite"]["name"] != new.manifest["suite"]["name"]:
        raise UnlearnBenchError(f"BASE is a {base.manifest['suite']['name']!r} run and NEW a "
                                f"{new.manifest['suite']['name']!r} run; compare runs of one suite")
    unknown = set(tolerances or {}) - set(base.records.metric) - set(new.records.metric)
    if unknown:
        raise UnlearnBenchError(f"--tolerance names metrics neither run has: {', '.join(sorted(unknown))}")
    metadata, _ = metric_metadata(base, new)
    old, now = unit_values(base.labelled()), unit_values(new.labelled())
    shared = old[UNIT].drop_duplicates().merge(now[UNIT].drop_duplicates())
    if shared.empty:
        raise UnlearnBenchError(
            f"nothing to compare: BASE {base.path} and NEW {new.path} share no (method, target, seed); "
            "compare runs of the same methods, targets and seeds")
    # Left join: a metric BASE measured that NEW lacks for a unit is a NaN there, judged like one.
    paired = old.merge(shared).merge(now, on=[*KEYS, "target", "seed"], how="left", suffixes=("_base", "_new"))
    rows = []
    for key, group in paired.groupby(KEYS, sort=False):
        meta = metadata.get(key[1], {})
        tolerance = (tolerances or {}).get(key[1], meta.get("tolerance"))
        rows.append(comparison_row(key, group.value_base.to_numpy(float), group.value_new.to_numpy(float),
                                   meta.get("higher_is_better"), tolerance))
    return pd.DataFrame(rows)


def comparison_row(key: tuple, old: np.ndarray, new: np.ndarray, higher_is_better: bool | None,
                   tolerance: float | None) -> dict:
    """``old`` and ``new``: the two runs' values of one (method, metric), unit by unit (NaN: none)."""
    both = ~np.isnan(old) & ~np.isnan(new)
    missing = int((~np.isnan(old) & np.isnan(new)).sum())  # BASE had a number, NEW has NaN or nothing
    gated = higher_is_better is not None and tolerance is not None
    old_mean = float(old[both].mean()) if both.any() else math.nan
    new_mean = float(new[both].mean()) if both.any() else math.nan
    diff = new_mean - old_mean
    if gated and missing:
        status = MISSING
    elif not gated or not both.any():
        status = "not gated"
    else:
        worse = -diff if higher_is_better else diff
        status = "regressed" if worse > tolerance else "improved" if -worse > tolerance else "within tolerance"
    p_value = math.nan
    a, b = old[both], new[both]
    if len(a) >= 2 and (a.std() > 0 or b.std() > 0):
        with warnings.catch_warnings():  # one constant side is a valid Welch test; scipy warns about it
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)
    return {"method": key[0], "variant": key[0], "metric": key[1], "base": old_mean, "new": new_mean, "diff": diff,
            "n_base": int((~np.isnan(old)).sum()), "n_new": int((~np.isnan(new)).sum()), "n_missing": missing,
            "n_units": len(old), "p_value": p_value,
            "direction": None if higher_is_better is None else ("higher" if higher_is_better else "lower"),
            "tolerance": tolerance, "status": status}


def metric_metadata(base: StoredRun, new: StoredRun) -> tuple[dict[str, dict], list[str]]:
    """Each metric's direction and tolerance: the package's declaration, else BASE's manifest's (never
    NEW's); and a note per manifest entry that disagrees with what is used."""
    from unlearnbench.benchmarks.base import SUITES

    name = base.manifest["suite"]["name"]
    notes = []
    if name in SUITES:
        package = rec.metric_metadata(SUITES.get(name).metrics)
    else:
        package = rec.metric_metadata(())  # the goal and cost metrics every unit records
        notes.append(f"suite {name!r} is not registered here (give --plugin MODULE for the module that registers "
                     "it): its metrics' directions and tolerances are taken from BASE's manifest")
    used = {**base.manifest["metrics"], **package}
    for role, run in (("BASE", base), ("NEW", new)):
        for metric, meta in run.manifest["metrics"].items():
            if metric in used and describe(meta) != describe(used[metric]):
                notes.append(f"{role}'s manifest says {metric}: {describe(meta)}; compared as "
                             f"{'the package declares' if metric in package else 'BASE says'}: "
                             f"{describe(used[metric])}")
    return used, notes


def describe(meta: dict) -> str:
    direction = {True: "higher is better", False: "lower is better"}.get(meta.get("higher_is_better"), "no direction")
    tolerance = meta.get("tolerance")
    return f"{direction}, " + ("not gated" if tolerance is None else f"tolerance {tolerance:g}")


def settings_changes(base: StoredRun, new: StoredRun) -> list[str]:
    """The suite's and each shared method's settings that differ, as ``key old -> new``. A setting left at
    none in one run and shown with the value it resolved to in the other (``resolved``: a manifest written
    since the manifest shows resolved values) is the same setting."""
    absent = object()

    def diff(old: dict, now: dict) -> str:
        before, after = old["config"], now["config"]
        resolved = {*old.get("resolved", ()), *now.get("resolved", ())}
        changed = [k for k in dict.fromkeys([*before, *after])
                   if before.get(k, absent) != after.get(k, absent)
                   and not (k in resolved and None in (before.get(k), after.get(k)))]
        return ", ".join(f"{k} {text(before.get(k, absent))} -> {text(after.get(k, absent))}" for k in changed)

    def text(value: object) -> str:
        return "(no such setting)" if value is absent else as_text(value)

    changes = []
    if suite := diff(base.manifest["suite"], new.manifest["suite"]):
        changes.append(f"suite settings changed: {suite}")
    old, now = base.manifest["methods"], new.manifest["methods"]
    for method in [m for m in old if m in now]:
        if method_diff := diff(old[method], now[method]):
            changes.append(f"settings of {method} changed: {method_diff}")
    return changes


def missing_in_new(base: StoredRun, new: StoredRun) -> list[str]:
    """The methods, targets, seeds and single units BASE ran that NEW did not."""
    def units(run: StoredRun) -> set[tuple[str, str, int]]:
        records = run.labelled()
        after = records[records.stage == "after"]
        return set(zip(after.method, after.target, after.seed.astype(int)))

    old, now = units(base), units(new)
    lines = []
    for i, what in enumerate(("method", "target", "seed")):
        gone = sorted({u[i] for u in old} - {u[i] for u in now})
        if gone:
            names = ", ".join(repr(g) if what == "target" else str(g) for g in gone)
            lines.append(f"{what}{'s' if len(gone) > 1 else ''} {names} ran in BASE but not in NEW")
            old = {u for u in old if u[i] not in gone}
    rest = sorted(old - now)
    if rest:
        shown = "; ".join(f"{m} on {t!r} seed {s}" for m, t, s in rest[:5])
        lines.append(f"{len(rest)} unit{'s' if len(rest) > 1 else ''} of BASE missing in NEW: {shown}"
                     + (f" and {len(rest) - 5} more" if len(rest) > 5 else ""))
    return lines


def differences(base: StoredRun, new: StoredRun) -> list[str]:
    """What else differs between the runs, so a reader knows what the numbers compare: the base model,
    metric declarations that disagree, units timed beside other work, what only NEW ran."""
    notes = []
    old_suite, new_suite = base.manifest["suite"], new.manifest["suite"]
    if old_suite.get("model_fingerprint") != new_suite.get("model_fingerprint"):
        notes.append(f"the base models differ (weights {old_suite.get('model_fingerprint')} vs "
                     f"{new_suite.get('model_fingerprint')})")
    notes += metric_metadata(base, new)[1]
    for role, run in (("BASE: ", base), ("NEW: ", new)):
        if note := loaded_note(run.manifest.get("units", {}), role):
            notes.append(note)
    old = base.records[base.records.stage == "after"]
    now = new.records[new.records.stage == "after"]
    for column, what in (("method", "methods"), ("target", "targets"), ("seed", "seeds")):
        extra = sorted(set(now[column]) - set(old[column]))
        if extra:
            notes.append(f"only in NEW (not compared): {what} {', '.join(map(str, extra))}")
    return notes


def format_value(value: float, metric: str) -> str:
    if pd.isna(value):
        return ""
    if metric.endswith("_bytes"):
        return human_bytes(value)
    return f"{value:.2f}" if abs(value) < 1e5 else f"{value:,.0f}"


def comparison_table(result: pd.DataFrame, gated_only: bool = False) -> pd.DataFrame:
    """The comparison as display cells, regressions first."""
    shown = result[result.status != "not gated"] if gated_only else result
    order = {status: i for i, status in enumerate(STATUSES)}
    shown = shown.iloc[np.argsort([order[s] for s in shown.status], kind="stable")]
    return pd.DataFrame({
        "metric": shown.metric.to_numpy(),
        "direction": [d or "" for d in shown.direction],
        "base": [format_value(v, m) for v, m in zip(shown.base, shown.metric)],
        "new": [format_value(v, m) for v, m in zip(shown.new, shown.metric)],
        "diff": [("+" if d > 0 else "") + format_value(d, m) for d, m in zip(shown["diff"], shown.metric)],
        "tolerance": ["" if pd.isna(t) else f"{t:g}" for t in shown.tolerance],
        "p": ["" if pd.isna(p) else f"{p:.3g}" for p in shown.p_value],
        "status": shown.status.to_numpy(),
    }, index=pd.Index(shown.variant.to_numpy(), name="method"))


def regressions(result: pd.DataFrame) -> pd.DataFrame:
    return result[result.status.isin(FAILING)]


def summary_line(comparison: Comparison) -> str:
    result = comparison.rows
    bad = regressions(result)
    gated = int((result.status != "not gated").sum())
    if bad.empty and not comparison.failures:
        return f"no regression beyond tolerance ({gated} gated metrics compared, {len(result)} in all)"
    moved = "; ".join(
        f"{r.variant} {r.metric} NaN or missing in NEW for {r.n_missing} of {r.n_units} units where BASE had a number"
        if r.status == MISSING else f"{r.variant} {r.metric} {r.base:.2f} -> {r.new:.2f} (tolerance {r.tolerance:g})"
        for r in bad.itertuples())
    parts = [f"REGRESSED {len(bad)} of {gated} gated metrics" + (f": {moved}" if moved else "")]
    if comparison.failures:
        parts.append(f"and {len(comparison.failures)} other failure{'s' if len(comparison.failures) > 1 else ''} "
                     "of the gate (below)")
    return " ".join(parts)

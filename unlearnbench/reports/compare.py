"""``bench.py compare BASE NEW``: did anything move the wrong way between two runs?

Per (method, config hash, metric), over the (target, seed) units both runs have: the mean of each
run, the difference, the metric's direction and tolerance (read from the runs' manifests, so a
comparison never imports suite code), and with at least two units on each side Welch's t-test
p-value (scipy). A metric regressed when it moved the wrong way by more than its tolerance; metrics
without a tolerance (timings, memory, counts) are shown but never gated unless ``--tolerance``
names them. The base model's rows appear as method ``original``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from unlearnbench import records as rec
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports.tables import ORIGINAL, human_bytes, loaded_note, variant_labels

KEYS = ["method", "config_hash", "metric"]
STATUSES = ("regressed", "improved", "within tolerance", "not gated")


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


def unit_values(records: pd.DataFrame) -> pd.DataFrame:
    """One value per (method, config hash, metric, target, seed); the base model as ``original``."""
    after = records[records.stage == "after"]
    before = records[records.stage == "before"].drop_duplicates(["target", "seed", "metric"])
    before = before.assign(method=ORIGINAL, config_hash="")
    return pd.concat([before, after], ignore_index=True)[[*KEYS, "target", "seed", "value"]]


def compare_runs(base: StoredRun, new: StoredRun, tolerances: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (method, config hash, metric) the two runs share, with its status."""
    if base.manifest["suite"]["name"] != new.manifest["suite"]["name"]:
        raise UnlearnBenchError(f"BASE is a {base.manifest['suite']['name']!r} run and NEW a "
                                f"{new.manifest['suite']['name']!r} run; compare runs of one suite")
    unknown = set(tolerances or {}) - set(base.records.metric) - set(new.records.metric)
    if unknown:
        raise UnlearnBenchError(f"--tolerance names metrics neither run has: {', '.join(sorted(unknown))}")
    metadata = {**base.manifest["metrics"], **new.manifest["metrics"]}
    old, now = unit_values(base.records), unit_values(new.records)
    units = ["method", "config_hash", "target", "seed"]
    shared = old[units].drop_duplicates().merge(now[units].drop_duplicates())
    if shared.empty:
        raise UnlearnBenchError(
            f"nothing to compare: BASE {base.path} and NEW {new.path} share no (method, settings, target, seed); "
            "compare runs of the same methods, settings, targets and seeds")
    old, now = old.merge(shared), now.merge(shared)
    labels = variant_labels(pd.concat([old, now]), {**base.configs(), **new.configs()})
    rows = []
    for key, old_group in old.groupby(KEYS, sort=False):
        new_group = now[(now.method == key[0]) & (now.config_hash == key[1]) & (now.metric == key[2])]
        if new_group.empty:
            continue
        meta = metadata.get(key[2], {})
        tolerance = (tolerances or {}).get(key[2], meta.get("tolerance"))
        rows.append(comparison_row(key, labels[key[:2]], old_group.value.to_numpy(), new_group.value.to_numpy(),
                                   meta.get("higher_is_better"), tolerance))
    return pd.DataFrame(rows)


def comparison_row(key: tuple, label: str, old: np.ndarray, new: np.ndarray, higher_is_better: bool | None,
                   tolerance: float | None) -> dict:
    diff = float(new.mean() - old.mean())
    if higher_is_better is None or tolerance is None:
        status = "not gated"
    else:
        worse = -diff if higher_is_better else diff
        status = "regressed" if worse > tolerance else "improved" if -worse > tolerance else "within tolerance"
    p_value = math.nan
    if len(old) >= 2 and len(new) >= 2 and (old.std() > 0 or new.std() > 0):
        with warnings.catch_warnings():  # one constant side is a valid Welch test; scipy warns about it
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(scipy_stats.ttest_ind(new, old, equal_var=False).pvalue)
    return {"method": key[0], "config_hash": key[1], "variant": label, "metric": key[2], "base": float(old.mean()),
            "new": float(new.mean()), "diff": diff, "n_base": len(old), "n_new": len(new), "p_value": p_value,
            "direction": None if higher_is_better is None else ("higher" if higher_is_better else "lower"),
            "tolerance": tolerance, "status": status}


def differences(base: StoredRun, new: StoredRun) -> list[str]:
    """What else differs between the runs, so a reader knows what the numbers compare: the base
    model, suite settings, and method variants only one run has (not compared)."""
    notes = []
    old_suite, new_suite = base.manifest["suite"], new.manifest["suite"]
    if old_suite.get("model_fingerprint") != new_suite.get("model_fingerprint"):
        notes.append(f"the base models differ (weights {old_suite.get('model_fingerprint')} vs "
                     f"{new_suite.get('model_fingerprint')})")
    changed = [f"{k} {old_suite['config'].get(k)!r} -> {v!r}" for k, v in new_suite["config"].items()
               if old_suite["config"].get(k) != v]
    if changed:
        notes.append(f"suite settings differ: {', '.join(changed)}")
    for role, run in (("BASE: ", base), ("NEW: ", new)):
        if note := loaded_note(run.manifest.get("units", {}), role):
            notes.append(note)
    return notes + unmatched(base, new)


def unmatched(base: StoredRun, new: StoredRun) -> list[str]:
    """Method variants only one of the runs has (not compared)."""
    def variants(run: StoredRun) -> set[tuple[str, str]]:
        after = run.records[run.records.stage == "after"]
        return set(zip(after.method, after.config_hash))

    old, now = variants(base), variants(new)
    return ([f"only in BASE: {m} ({h})" for m, h in sorted(old - now)]
            + [f"only in NEW: {m} ({h})" for m, h in sorted(now - old)])


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
    return result[result.status == "regressed"]


def summary_line(result: pd.DataFrame) -> str:
    bad = regressions(result)
    gated = int((result.status != "not gated").sum())
    if bad.empty:
        return f"no regression beyond tolerance ({gated} gated metrics compared, {len(result)} in all)"
    moved = "; ".join(f"{r.variant} {r.metric} {r.base:.2f} -> {r.new:.2f} (tolerance {r.tolerance:g})"
                      for r in bad.itertuples())
    return f"REGRESSED {len(bad)} of {gated} gated metrics: {moved}"

"""Tidy result records: one row per (run, suite, suite version, model, target, method, method-config
hash, seed, stage, metric). Tables and plots are views of these rows, never the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from unlearnbench.cache import atomic_write
from unlearnbench.errors import UnlearnBenchError

COLUMNS = ("run_id", "suite", "suite_version", "model", "target", "method", "config_hash", "seed",
           "stage", "metric", "value")
STAGES = ("before", "after")
DTYPES = {"run_id": "string", "suite": "string", "suite_version": "int64", "model": "string",
          "target": "string", "method": "string", "config_hash": "string", "seed": "int64",
          "stage": "string", "metric": "string", "value": "float64"}




@dataclass(frozen=True)
class Metric:
    """What a metric's number means, so reports and ``bench.py compare`` know which way is better.

    ``tolerance``: by how much (in the metric's unit) it may move the wrong way before ``compare``
    calls it a regression; None: shown but never gated (timings vary from machine to machine).
    """

    name: str
    split: str  # which data it is measured on, e.g. "forget-test"
    higher_is_better: bool
    unit: str = "%"
    tolerance: float | None = 1.0
    about: str = ""  # what it measures, in words: figure axes and the report's column hints


# Metrics every unit records besides its suite's: whether the method met the task's goal on
# validation (1 or 0, and the two validation values it was judged on), then what it cost.
GOAL_METRICS = (
    Metric("goal_met", "forget-val", True, unit="fraction", tolerance=0.0,
           about="whether the unit met its task's goal on validation, judged by the runner"),
    Metric("val_forget", "forget-val", False, about="the goal's forget metric on validation after unlearning"),
    Metric("val_retain", "retain-val", True, about="the goal's retain metric on validation after unlearning"),
)
COST_METRICS = (
    *(Metric(name, "cost", False, unit="s", tolerance=None)
      for name in ("runtime_s", "runtime_precompute_s", "runtime_update_s", "runtime_search_s", "eval_seconds",
                   "floor_s")),
    # runtime_s / floor_s, for methods with a floor (SLUG: its gradient passes plus one validation)
    Metric("runtime_over_floor", "cost", False, unit="ratio", tolerance=None),
    Metric("peak_memory_bytes", "cost", False, unit="bytes", tolerance=None),
    Metric("storage_bytes", "cost", False, unit="bytes", tolerance=None),
    *(Metric(name, "cost", False, unit="count", tolerance=None)
      for name in ("forward_samples", "backward_samples", "evaluations", "changed_tensors")),
)


def metric_metadata(metrics: tuple[Metric, ...]) -> dict[str, dict]:
    """``{name: {split, higher_is_better, unit, tolerance, about}}`` for a manifest, so readers of a run
    (``bench.py compare``, the report) never import suite code. ``metrics``: the suite's test metrics and
    the validation-only ones its goal and methods' traces use (``Suite.validation_metrics``)."""
    return {m.name: {"split": m.split, "higher_is_better": m.higher_is_better, "unit": m.unit,
                     "tolerance": m.tolerance, "about": m.about} for m in (*metrics, *GOAL_METRICS, *COST_METRICS)}


def make_records(values: dict[str, float], **keys: object) -> pd.DataFrame:
    """Rows for every ``metric -> value`` in ``values``, each carrying the same ``keys``."""
    missing = set(COLUMNS) - {"metric", "value"} - set(keys)
    if missing:
        raise ValueError(f"record keys missing: {sorted(missing)}")
    frame = pd.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})
    for key, value in keys.items():
        frame[key] = value
    return validate(frame[list(COLUMNS)])


def validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and return the frame with canonical dtypes."""
    if list(frame.columns) != list(COLUMNS):
        raise ValueError(f"records must have columns {COLUMNS}, got {tuple(frame.columns)}")
    bad = set(frame.stage) - set(STAGES)
    if bad:
        raise ValueError(f"unknown stages {sorted(bad)}; expected {STAGES}")
    return frame.astype(DTYPES).reset_index(drop=True)


META_KEY = b"unlearnbench"


def write(frame: pd.DataFrame, path: Path, metadata: dict | None = None) -> None:
    """Write records atomically; ``metadata`` (JSON-able) travels inside the parquet file, so a unit's
    numbers and the identity that produced them can never be separated."""
    table = pa.Table.from_pandas(validate(frame), preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               META_KEY: json.dumps(metadata, default=str).encode()})
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_metadata(path: Path) -> dict:
    """The metadata ``write`` stored with the records ({} if none)."""
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UnlearnBenchError(f"no records at {path}")
    return validate(pd.read_parquet(path))

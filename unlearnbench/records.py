"""Tidy result records: one row per (run, suite, suite version, model, target, method, method-config
hash, seed, stage, metric). Tables and plots are views of these rows, never the store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unlearnbench.cache import atomic_write
from unlearnbench.errors import UnlearnBenchError

COLUMNS = ("run_id", "suite", "suite_version", "model", "target", "method", "config_hash", "seed",
           "stage", "metric", "value")
STAGES = ("before", "after")
DTYPES = {"run_id": "string", "suite": "string", "suite_version": "int64", "model": "string",
          "target": "string", "method": "string", "config_hash": "string", "seed": "int64",
          "stage": "string", "metric": "string", "value": "float64"}


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


def write(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: validate(frame).to_parquet(tmp, index=False))


def read(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UnlearnBenchError(f"no records at {path}")
    return validate(pd.read_parquet(path))

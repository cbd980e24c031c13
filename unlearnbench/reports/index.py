"""``runs/index.md`` and ``bench.py runs``: every run folder under an output folder, newest first, with
the command that made it, when, its suite, methods, targets and seeds (read from each manifest.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from unlearnbench.cache import atomic_write_text
from unlearnbench.reports.tables import to_markdown

COLUMNS = ["run", "created", "suite", "methods", "targets", "seeds", "command"]


def run_index(out: Path) -> pd.DataFrame:
    """One row per run folder of ``out`` (a folder with a manifest.json), newest first."""
    rows = []
    for path in Path(out).glob("*/manifest.json"):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not a run's manifest (or one being replaced this instant): nothing to list
        methods = manifest.get("methods", {})
        rows.append({"run": path.parent.name, "created": manifest.get("created", ""),
                     "suite": manifest.get("suite", {}).get("name", ""),
                     "methods": ", ".join(dict.fromkeys(m.get("method", name) for name, m in methods.items())),
                     "targets": ", ".join(manifest.get("targets", [])),
                     "seeds": ", ".join(map(str, manifest.get("seeds", []))),
                     # runs made before commands were recorded
                     "command": manifest.get("command") or "(not recorded)"})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["created", "run"], ascending=False, ignore_index=True)


def write_index(out: Path) -> Path:
    """Rewrite ``out/index.md`` from the manifests there."""
    table = run_index(out)
    path = Path(out) / "index.md"
    atomic_write_text(path, f"# Runs in {out}\n\nNewest first; each run's folder holds report.html, table.md and "
                      "records.parquet. Rerunning a command resumes its run.\n\n"
                      + to_markdown(table.set_index("run"), index_name="run"))
    return path

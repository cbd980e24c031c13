"""report.html: a run's or a paper table's results as one self-contained page.

Everything is inside the file, so it can be mailed, archived or opened offline: figures are PNG data
URIs, the style sheet is inline, and there is no script; its Content-Security-Policy lets a browser
load nothing from anywhere. The page is rendered with jinja2 from ``templates/report.html.j2`` with
autoescape on, so targets, settings and model answers always show as text, never as markup.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from unlearnbench.cache import atomic_write_text
from unlearnbench.config import as_text
from unlearnbench.reports.plots import direction_arrow
from unlearnbench.reports.tables import MISSED, MISSED_NOTE, column_name

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Figure:
    caption: str
    path: Path  # a PNG file


@dataclass(frozen=True)
class UnitPart:
    """What a page shows of one (target, method, seed) unit besides its numbers."""

    name: str
    figures: tuple[Figure, ...] = ()  # every trace its method stored, the before | after samples
    # answers/<unit>.parquet: the same questions answered before and after (answers/<unit>.md in runs
    # stored before answers were data: shown as the text it is)
    answers: Path | None = None


@dataclass(frozen=True)
class RunPart:
    """What a page shows of one run: its manifest, its figures and its units."""

    label: str  # "" on a run's own page; the run's label on a paper table's ("style")
    manifest: dict
    figures: tuple[Figure, ...]
    units: tuple[UnitPart, ...]
    units_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per unit (tables.unit_table)


def write_report(path: Path, title: str, notes: list[str], table: pd.DataFrame, runs: list[RunPart]) -> Path:
    """Write the page: title, ``notes`` (sentences under the table), ``table`` (formatted cells, one row
    per method variant, marked with MISSED where it missed the goal) and each run's part."""
    metrics = {name: meta for run in runs for name, meta in run.manifest["metrics"].items()}
    missed = any(str(label).endswith(MISSED) for label in table.index)
    notes = [note for note in [*notes, MISSED_NOTE if missed else ""] if note]
    page = environment().get_template(TEMPLATE).render(title=title, notes=notes, table=table_view(table, metrics),
                                                       runs=[run_view(run) for run in runs])
    atomic_write_text(Path(path), page)
    return Path(path)


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("unlearnbench.reports", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def table_view(table: pd.DataFrame, metrics: dict[str, dict]) -> dict:
    """Header cells with each metric's direction (↑/↓ from the manifest's metric metadata) and what it
    measures; rows with their missed-goal mark. A paper table's column "FA@1 (published)" or
    "UA (style)" takes the direction of FA@1 or UA. Cells break only before a "±", so a wide table
    wraps its numbers' spreads rather than its numbers."""
    columns = []
    for column in map(str, table.columns):
        meta = metrics.get(column.split(" (")[0], {})
        better = meta.get("higher_is_better")
        about = [meta.get("about", ""), meta.get("split", ""), meta.get("unit", ""),
                 "" if better is None else f"{'higher' if better else 'lower'} is better"]
        columns.append({"name": column_name(column), "arrow": direction_arrow(better),
                        "about": ", ".join(a for a in about if a)})
    rows = [{"label": str(label), "missed": str(label).endswith(MISSED), "cells": list(map(cell_text, row))}
            for label, row in zip(table.index, table.itertuples(index=False))]
    return {"index": table.index.name or "method", "columns": columns, "rows": rows}


def cell_text(value: object) -> str:
    """A number's cell with no break inside "16.00 KB" or "85.00", one allowed before "± 7.07"; a layer's long
    dotted name may break after its dots (a zero-width space), rather than widen the page."""
    text = str(value)
    if " " not in text and len(text) > 24:
        return text.replace(".", ".\u200b")
    return text.replace(" ", "\u00a0").replace("\u00a0±\u00a0", " ±\u00a0")


def run_view(run: RunPart) -> dict:
    manifest = run.manifest
    suite, units = manifest["suite"], manifest["units"]
    packages = ", ".join(f"{name} {version}" for name, version in manifest.get("packages", {}).items() if version)
    machine = manifest.get("machine", {})
    summary = [
        ("run", manifest.get("run_id", "")),
        ("created", manifest.get("created", "")),
        ("suite", f"{suite['name']} v{suite['version']}"),
        ("model", f"{suite['model']} (weights {suite.get('model_fingerprint', 'not recorded')})"),
        ("targets", ", ".join(manifest["targets"])),
        ("seeds", ", ".join(map(str, manifest["seeds"]))),
        ("units reused", f"{sum(bool(u.get('reused')) for u in units.values())} of {len(units)}"),
        ("git revision", manifest.get("git") or "unknown"),
        ("packages", packages),
        ("machine", "; ".join(f"{key} {value}" for key, value in machine.items() if value not in (None, ""))),
    ]
    methods = []
    for name, method in manifest["methods"].items():
        code = sorted({u["code_fingerprint"] for u in units.values()
                       if u["method"] == method.get("method", name) and u["config_hash"] == method["config_hash"]})
        methods.append({"name": name, "config_hash": method["config_hash"], "code": ", ".join(code),
                        "settings": ", ".join(f"{k}={setting_text(v)}" for k, v in method["config"].items())})
    return {"label": run.label, "anchor": f"-{run.label}" if run.label else "", "summary": summary,
            "settings": [(key, setting_text(value)) for key, value in suite["config"].items()], "methods": methods,
            "figures": [figure_view(f) for f in run.figures], "units": [unit_view(u, units) for u in run.units],
            "units_table": table_view(run.units_table, manifest["metrics"]) if len(run.units_table) else None}


def unit_view(unit: UnitPart, units: dict[str, dict]) -> dict:
    info = units.get(unit.name, {})
    title = (f"{info['target']} — {info['method']} ({info['config_hash']}), seed {info['seed']}" if info
             else unit.name)
    return {"title": title, "name": unit.name, "figures": [figure_view(f) for f in unit.figures],
            "answers": answers_view(unit.answers) if unit.answers else None}


def figure_view(figure: Figure) -> dict:
    return {"caption": figure.caption, "uri": data_uri(figure.path)}


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def answers_view(path: Path) -> dict:
    """The before | after answers, rendered from their table (answers/<unit>.parquet); a run stored before
    answers were data has them as Markdown text, shown as the text it is."""
    if path.suffix != ".parquet":
        return {"columns": [], "rows": [], "text": Path(path).read_text()}
    table = pd.read_parquet(path)
    return {"columns": list(map(str, table.columns)), "rows": table.astype(str).values.tolist(), "text": ""}


def setting_text(value: object) -> str:
    """A setting as the command line writes it (a manifest stores tuples as JSON lists)."""
    return as_text(tuple(value) if isinstance(value, list) else value)

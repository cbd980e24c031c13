"""Regenerating the SLUG paper's tables: which runs each needs and the published numbers beside ours.

Published numbers come from the paper (Cai et al., ICML 2025, arXiv 2407.11867) as recorded in
the project's PROTOCOLS.md; a cell with no published number stays empty rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports.tables import COST_COLUMNS, GOAL_COLUMN, MISSED, ORIGINAL, summary_table


@dataclass(frozen=True)
class PaperTable:
    suite: str
    methods: tuple[str, ...]
    targets: str  # as --targets takes it
    columns: tuple[str, ...]  # metric columns in the paper's order
    published: dict[str, dict[str, float | str]] = field(default_factory=dict)  # our row -> column -> value
    caption: str = ""
    # Runs the table needs, each a label and suite settings; a label suffixes that run's metrics
    # ("UA (style)"). One unlabelled run by default.
    variants: tuple[tuple[str, dict[str, str]], ...] = (("", {}),)

    @property
    def cost_columns(self) -> tuple[str, ...]:
        return tuple(with_label(c, label) for label, _ in self.variants for c in (GOAL_COLUMN, *COST_COLUMNS))


def with_label(metric: str, label: str) -> str:
    return f"{metric} ({label})" if label else metric


PAPER_TABLES = {
    "clip-table": PaperTable(
        suite="clip",
        methods=("slug", "ga", "ft", "gaft", "salun", "salun-ga", "ssd", "ssd-slug"),
        targets="5",
        columns=("FA@1", "FA@5", "TA_IN@1", "TA_IN@5", "TA_CA@1", "TA_CA@5", "MIA"),
        # ViT-B-32 (laion400m_e32), mean over 5 identities. The paper's SalUn and SSD rows are its
        # own variants of them, which `salun-ga` and `ssd-slug` reproduce. MIA has no published
        # cell: we could not read the paper's MIA numbers from its text (docs/PROTOCOLS.md).
        published={
            ORIGINAL: {"FA@1": 73.05, "TA_IN@1": 60.12, "TA_CA@1": 61.38},
            "ga": {"FA@1": 0.0, "TA_IN@1": 35.88, "TA_CA@1": 24.92},
            "salun-ga": {"FA@1": 0.0, "TA_IN@1": 55.45, "TA_CA@1": 26.11},
            "ssd-slug": {"FA@1": 0.0, "TA_IN@1": 51.84, "TA_CA@1": 35.96},
            "slug": {"FA@1": 0.0, "TA_IN@1": 59.96, "TA_CA@1": 58.32},
        },
        caption="CLIP identity unlearning (SLUG Table 1 layout): zero-shot accuracy in %, mean ± std over targets",
    ),
    "unlearncanvas-table": PaperTable(
        suite="unlearncanvas",
        methods=("slug", "esd", "salun", "salun-ga", "ga", "ft"),
        targets="2",
        columns=tuple(with_label(m, kind) for kind in ("style", "object")
                      for m in ("UA", "UA_para", "IRA", "CRA", "FID")),
        # SD v1.5 fine-tuned on UnlearnCanvas, style unlearning, mean over styles (PROTOCOLS.md).
        published={
            "esd": {"UA (style)": 98.58, "runtime_s (style)": "6163 s", "storage_bytes (style)": "4.3 GB"},
            "salun": {"UA (style)": 86.26, "runtime_s (style)": "667 s", "storage_bytes (style)": "4.0 GB"},
            "slug": {"UA (style)": 86.29, "runtime_s (style)": "39 s", "storage_bytes (style)": "0.04 GB"},
        },
        caption="UnlearnCanvas (SLUG Table 3 layout): UA, IRA, CRA in % on generated images, style and object "
                "targets, mean ± std over targets",
        variants=(("style", {"target_kind": "style"}), ("object", {"target_kind": "object"})),
    ),
}


def paper_table(name: str) -> PaperTable:
    if name not in PAPER_TABLES:
        raise UnlearnBenchError(f"unknown paper table {name!r}; tables: {', '.join(PAPER_TABLES)}")
    return PAPER_TABLES[name]


def with_published(records: pd.DataFrame, table: PaperTable, ci: float | None = None) -> pd.DataFrame:
    """Our cells in the paper's column order, each column with a published number followed by a
    "(published)" column; costs (runtime, storage, measured sample passes) at the end."""
    ours = summary_table(records, [*table.columns, *table.cost_columns], ci)
    out = pd.DataFrame(index=ours.index)
    published_columns = {m for row in table.published.values() for m in row}
    for metric in [*table.columns, *table.cost_columns]:
        out[metric] = ours.get(metric, "")
        if metric in published_columns:
            out[f"{metric} (published)"] = [
                format_published(table.published.get(row.removesuffix(MISSED), {}).get(metric)) for row in out.index]
    names = {"runtime_s": "runtime (s)", "storage_bytes": "storage", "forward_samples": "fwd samples",
             "backward_samples": "bwd samples"}
    return out.rename(columns=lambda c: next((c.replace(k, v) for k, v in names.items() if c.startswith(k)), c))


def format_published(value: float | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else f"{value:.2f}"


def label_records(records: pd.DataFrame, label: str) -> pd.DataFrame:
    """Suffix every metric of one variant's run with its label."""
    return records.assign(metric=[with_label(m, label) for m in records.metric]) if label else records


def for_variant(spec, table: PaperTable, label: str):
    """The RunSpec of one variant: the user's settings plus the variant's suite settings."""
    return replace(spec, suite_overrides={**spec.suite_overrides, **dict(table.variants)[label]})

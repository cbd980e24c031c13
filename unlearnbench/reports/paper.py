"""Regenerating the SLUG paper's tables: which runs each needs and the published numbers beside ours.

Published numbers come from the paper (Cai et al., ICML 2025, arXiv 2407.11867) as recorded in
the project's PROTOCOLS.md; a cell with no published number stays empty rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports.tables import COST_COLUMNS, ORIGINAL, summary_table


@dataclass(frozen=True)
class PaperTable:
    suite: str
    methods: tuple[str, ...]
    targets: str  # as --targets takes it
    columns: tuple[str, ...]  # metric columns in the paper's order
    published: dict[str, dict[str, float]] = field(default_factory=dict)  # our row -> metric -> value
    caption: str = ""


PAPER_TABLES = {
    "clip-table": PaperTable(
        suite="clip",
        methods=("slug", "ga", "ft", "gaft", "salun", "salun-ga", "ssd", "ssd-slug"),
        targets="5",
        columns=("FA@1", "FA@5", "TA_IN@1", "TA_IN@5", "TA_CA@1", "TA_CA@5"),
        # ViT-B-32 (laion400m_e32), mean over 5 identities. The paper's SalUn and SSD rows are its
        # own variants of them, which `salun-ga` and `ssd-slug` reproduce.
        published={
            ORIGINAL: {"FA@1": 73.05, "TA_IN@1": 60.12, "TA_CA@1": 61.38},
            "ga": {"FA@1": 0.0, "TA_IN@1": 35.88, "TA_CA@1": 24.92},
            "salun-ga": {"FA@1": 0.0, "TA_IN@1": 55.45, "TA_CA@1": 26.11},
            "ssd-slug": {"FA@1": 0.0, "TA_IN@1": 51.84, "TA_CA@1": 35.96},
            "slug": {"FA@1": 0.0, "TA_IN@1": 59.96, "TA_CA@1": 58.32},
        },
        caption="CLIP identity unlearning (SLUG Table 1 layout): zero-shot accuracy in %, mean ± std over targets",
    ),
}


def paper_table(name: str) -> PaperTable:
    if name not in PAPER_TABLES:
        raise UnlearnBenchError(f"unknown paper table {name!r}; tables: {', '.join(PAPER_TABLES)}")
    return PAPER_TABLES[name]


def with_published(records: pd.DataFrame, table: PaperTable, ci: float | None = None) -> pd.DataFrame:
    """Our cells in the paper's column order, each metric with a published number followed by a
    "(published)" column; costs (runtime, storage, measured sample passes) at the end."""
    ours = summary_table(records, [*table.columns, *COST_COLUMNS], ci)
    out = pd.DataFrame(index=ours.index)
    published_metrics = {m for row in table.published.values() for m in row}
    for metric in table.columns:
        out[metric] = ours.get(metric, "")
        if metric in published_metrics:
            out[f"{metric} (published)"] = [
                f"{table.published[row][metric]:.2f}" if metric in table.published.get(row, {}) else ""
                for row in out.index]
    for metric in COST_COLUMNS:
        out[metric] = ours.get(metric, "")
    return out.rename(columns={"runtime_s": "runtime (s)", "storage_bytes": "storage",
                               "forward_samples": "fwd samples", "backward_samples": "bwd samples"})

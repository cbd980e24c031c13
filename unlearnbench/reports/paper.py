"""Regenerating the SLUG paper's tables: which runs each needs and the published numbers beside ours.

Published numbers come from the paper (Cai et al., ICML 2025, arXiv 2407.11867); a cell with no
published number stays empty rather than guessed. A table names the suite settings under which its
published numbers were measured the paper's way (docs/PROTOCOLS.md); run under others, its published
columns are marked "(published‡)" and the table carries a footnote saying what differs (‡, so as not to be
confused with the † of a method that missed its goal).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.reports.tables import (ATTACK_SEPARATOR, COST_COLUMNS, GOAL_COLUMN, MISSED, ORIGINAL, attack_columns,
                                         column_name, summary_table)

NOT_COMPARABLE = "‡"  # a published number measured by another protocol or model than ours


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
    # Suite settings under `--config real` unless the user sets them: the paper's protocol.
    real_settings: dict[str, str] = field(default_factory=dict)
    # Suite setting -> the values under which our numbers are measured as the published ones; empty:
    # always; None: under no setting yet (the suite does not implement the paper's protocol).
    # ``footnote`` says what differs otherwise.
    comparable_when: dict[str, tuple[object, ...]] | None = field(default_factory=dict)
    footnote: str = ""

    def comparable(self, settings: dict[str, object] | None) -> bool:
        """Whether a run with suite ``settings`` measures what the published numbers measure."""
        if self.comparable_when is None:
            return False
        if not self.comparable_when:
            return True
        return settings is not None and all(settings.get(k) in ok for k, ok in self.comparable_when.items())

    def note(self, settings: dict[str, object] | None) -> str:
        """The footnote a table run under ``settings`` needs ("" when comparable)."""
        return "" if self.comparable(settings) else f"{NOT_COMPARABLE} {self.footnote}"

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
        real_settings={"protocol": "slug"},
        comparable_when={"config": ("real",), "protocol": ("slug",), "model": ("ViT-B-32",)},
        footnote="published for ViT-B-32 (laion400m_e32) under the paper's protocol (`--config real`, protocol=slug); "
                 "this run's model or protocol differs, so those numbers are not comparable with ours "
                 "(docs/PROTOCOLS.md, clip)",
    ),
    "unlearncanvas-table": PaperTable(
        suite="unlearncanvas",
        methods=("slug", "esd", "salun", "salun-ga", "ga", "ft"),
        targets="2",
        columns=tuple(with_label(m, kind) for kind in ("style", "object")
                      for m in ("UA", "UA_para", "IRA", "CRA", "FID")),
        # SD v1.5 fine-tuned on UnlearnCanvas, style unlearning, mean over styles (docs/PROTOCOLS.md).
        published={
            "esd": {"UA (style)": 98.58, "runtime_s (style)": "6163 s", "storage_bytes (style)": "4.3 GB"},
            "salun": {"UA (style)": 86.26, "runtime_s (style)": "667 s", "storage_bytes (style)": "4.0 GB"},
            "slug": {"UA (style)": 86.29, "runtime_s (style)": "39 s", "storage_bytes (style)": "0.04 GB"},
        },
        caption="UnlearnCanvas (SLUG Table 3 layout): UA, IRA, CRA in % on generated images, style and object "
                "targets, mean ± std over targets",
        variants=(("style", {"target_kind": "style"}), ("object", {"target_kind": "object"})),
        comparable_when=None,
        footnote="not the paper's measurement: the suite's SLUG, FID, SalUn and ESD still differ from the "
                 "reference's (docs/PROTOCOLS.md, unlearncanvas), and the embedded model is not SD v1.5",
    ),
    "llava-table": PaperTable(
        suite="llava",
        # The paper reports SLUG alone on LLaVA; slug-lm (SLUG on LLaVA's own answers) and GA are
        # this benchmark's rows, without published numbers.
        methods=("slug", "slug-lm", "ga"),
        targets="10",
        columns=("FA", "TA_ID", "TA_VQA"),
        # LLaVA-1.5-7B, mean over 10 identities (Sec. 5.3): FA 99.5% before, 2.8% after SLUG. Its utility
        # numbers are general VLM benchmarks, which TA_ID / TA_VQA are not: no published cell there.
        published={ORIGINAL: {"FA": 99.5}, "slug": {"FA": 2.8}},
        comparable_when={"config": ("real",), "match": (None, "substring")},
        footnote="not the paper's measurement: the published FA is LLaVA-1.5-7B answering about the mu_llava_* "
                 "identities, scored by substring (config=real, match=substring); this run differs "
                 "(docs/PROTOCOLS.md, llava).",
        caption="LLaVA identity unlearning (SLUG Sec. 5.3): FA, TA_ID, TA_VQA in % from greedy answers, "
                "mean ± std over targets",
    ),
}


def paper_table(name: str) -> PaperTable:
    if name not in PAPER_TABLES:
        from unlearnbench.reports.claims import NAME as CLAIMS

        raise UnlearnBenchError(f"unknown paper table {name!r}; tables: {', '.join(PAPER_TABLES)}, {CLAIMS}, "
                                f"{ROBUSTNESS}")
    return PAPER_TABLES[name]


def with_published(records: pd.DataFrame, table: PaperTable, ci: float | None = None,
                   settings: dict[str, object] | None = None) -> pd.DataFrame:
    """Our cells in the paper's column order, each column with a published number followed by a
    "(published)" column ("(published‡)" when ``settings``, the run's suite settings, do not measure
    it the paper's way: see ``PaperTable.note``); costs (runtime, storage, sample passes) at the end."""
    ours = summary_table(records, [*table.columns, *table.cost_columns], ci)
    out = pd.DataFrame(index=ours.index)
    published_columns = {m for row in table.published.values() for m in row}
    mark = "" if table.comparable(settings) else NOT_COMPARABLE
    for metric in [*table.columns, *table.cost_columns]:
        out[metric] = ours.get(metric, "")
        if metric in published_columns:
            out[f"{metric} (published{mark})"] = [
                format_published(table.published.get(row.removesuffix(MISSED), {}).get(metric)) for row in out.index]
    return out.rename(columns=column_name)


def format_published(value: float | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else f"{value:.2f}"


def label_records(records: pd.DataFrame, label: str) -> pd.DataFrame:
    """Suffix every metric of one variant's run with its label."""
    return records.assign(metric=[with_label(m, label) for m in records.metric]) if label else records


def for_variant(spec, table: PaperTable, label: str):
    """The RunSpec of one variant: the table's real-data settings (under `--config real`), the user's
    settings over them, and the variant's suite settings."""
    real = table.real_settings if spec.suite_overrides.get("config") == "real" else {}
    return replace(spec, suite_overrides={**real, **spec.suite_overrides, **dict(table.variants)[label]})


# `bench.py paper robustness`: methods x attacks per suite (unlearnbench/attacks/), not a table of the paper.
ROBUSTNESS = "robustness"
ROBUSTNESS_METHODS = {"clip": ("slug", "ga", "salun-ga", "ssd"), "llava": ("slug", "slug-lm", "ga"),
                      "unlearncanvas": ("slug", "salun")}
ROBUSTNESS_ATTACKS = "relearn,quantize,prompt"
ROBUSTNESS_TARGETS = "3"


def robustness_table(records: pd.DataFrame, forget_metric: str, ci: float | None = None) -> pd.DataFrame:
    """Methods (the base model first) x attack variants: ``forget_metric`` with no attack, after each variant,
    then each attack's runtime; cells as in every table (mean ± std over targets and seeds)."""
    columns = [forget_metric, GOAL_COLUMN, *attack_columns(records, forget_metric)]
    table = summary_table(records, columns, ci)

    def header(metric: str) -> str:
        name, _, variant = metric.partition(ATTACK_SEPARATOR)
        if not variant:
            return f"{name} (no attack)" if name == forget_metric else column_name(name)
        return f"runtime (s) {variant}" if name == "runtime_s" else variant

    return table.rename(columns=header)

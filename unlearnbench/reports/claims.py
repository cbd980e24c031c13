"""``bench.py paper claims``: the SLUG paper's claims, each checked on the embedded suites.

A claim is a sentence of the paper with the published numbers it rests on and a check of our records
that says reproduced or not reproduced, with our numbers beside the published ones. A claim we do not
reproduce stays in the table, with why. The embedded suites are miniatures of the paper's models, so
every published number here was measured on another model (‡ in the table): the check compares the
relation the paper claims (who keeps more, how many times cheaper), not the numbers themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from unlearnbench.reports.tables import human_bytes

NAME = "claims"  # bench.py paper claims: beside the paper tables (reports/paper.py), under the same command


@dataclass(frozen=True)
class ClaimRun:
    """One run the claims need: a suite, its methods and how many targets (as --targets takes it)."""

    suite: str
    methods: tuple[str, ...]
    targets: str


# The paper's own rows: SLUG against the baselines of its Table 1 (CLIP; its SalUn and SSD variants are
# salun-ga and ssd-slug here), Table 3 (UnlearnCanvas: SalUn) and Sec. 5.3 (LLaVA: SLUG alone).
CLAIM_RUNS = {
    "clip": ClaimRun("clip", ("slug", "ga", "salun-ga", "ssd-slug"), "2"),
    "unlearncanvas": ClaimRun("unlearncanvas", ("slug", "salun"), "2"),
    "llava": ClaimRun("llava", ("slug",), "2"),
}


@dataclass
class Evidence:
    """What the checks read: per suite, the mean ``after`` value per (method, metric) over targets and
    seeds, the base model's (``original``), and for unlearncanvas the runtime projected to SD v1.5."""

    means: dict[str, pd.DataFrame]  # suite -> DataFrame indexed by method, a column per metric
    original: dict[str, pd.Series]  # suite -> metric -> the base model's mean
    projected_runtime: dict[str, pd.Series]  # suite -> method -> real-scale seconds without the base validation
    projection_device: str = ""

    def value(self, suite: str, method: str, metric: str) -> float:
        table = self.means[suite]
        return float(table.loc[method, metric]) if method in table.index and metric in table else float("nan")


@dataclass(frozen=True)
class Verdict:
    reproduced: bool
    ours: str
    why: str = ""


@dataclass(frozen=True)
class Claim:
    suite: str
    claim: str  # what the paper says, in a sentence
    published: str  # the published numbers it rests on
    check: Callable[[Evidence], Verdict]


def best_retention(evidence: Evidence) -> Verdict:
    """clip: among methods that forget (mean FA@1 0), SLUG keeps the most TA_IN@1 and TA_CA@1."""
    table = evidence.means["clip"]
    forgot = table[table["FA@1"] <= 0.0]
    ours = ", ".join(f"{m} {r['FA@1']:.1f} / {r['TA_IN@1']:.1f} / {r['TA_CA@1']:.1f}" for m, r in table.iterrows())
    if "slug" not in forgot.index:
        return Verdict(False, ours, f"SLUG's mean FA@1 is {table.loc['slug', 'FA@1']:.1f}, not 0")
    behind = [f"{m} keeps more {metric}" for metric in ("TA_IN@1", "TA_CA@1")
              for m, row in forgot.iterrows() if m != "slug" and row[metric] > forgot.loc["slug", metric]]
    return Verdict(not behind, ours, "; ".join(behind))


def ua_on_par(evidence: Evidence) -> Verdict:
    slug, salun = (evidence.value("unlearncanvas", m, "UA") for m in ("slug", "salun"))
    gap = slug - salun
    return Verdict(abs(gap) <= 5.0, f"slug {slug:.2f}, salun {salun:.2f} (gap {gap:+.2f})",
                   "" if abs(gap) <= 5.0 else f"UA differs by {abs(gap):.1f} points")


def retention_on_par(evidence: Evidence) -> Verdict:
    rows, far = [], []
    for metric in ("IRA", "CRA"):
        slug, salun = (evidence.value("unlearncanvas", m, metric) for m in ("slug", "salun"))
        rows.append(f"{metric} slug {slug:.2f}, salun {salun:.2f}")
        if salun - slug > 10.0:
            far.append(f"SLUG's {metric} is {salun - slug:.1f} points below SalUn's")
    return Verdict(not far, "; ".join(rows), "; ".join(far))


def ratio_verdict(slow: float, fast: float, at_least: float, what: str, where: str) -> Verdict:
    """SalUn's cost over SLUG's against the claimed factor. Only the ratio is shown: seconds are a machine's
    (the runs' own tables have them)."""
    ratio = slow / fast if fast > 0 else float("inf")
    return Verdict(ratio >= at_least, f"salun / slug = {ratio:,.1f}x ({where})",
                   "" if ratio >= at_least else f"{what} only {ratio:.1f}x apart")


def runtime_measured(evidence: Evidence) -> Verdict:
    slow, fast = (evidence.value("unlearncanvas", m, "runtime_s") for m in ("salun", "slug"))
    return ratio_verdict(slow, fast, 10.0, "measured runtimes", "embedded model, measured here")


def runtime_projected(evidence: Evidence) -> Verdict:
    projected = evidence.projected_runtime.get("unlearncanvas")
    if projected is None or not {"slug", "salun"} <= set(projected.index):
        return Verdict(False, "not projected", "the real-scale pass times could not be measured")
    return ratio_verdict(projected["salun"], projected["slug"], 10.0, "projected runtimes",
                         f"the runs' passes at SD v1.5's pass times on {evidence.projection_device}")


def storage(evidence: Evidence) -> Verdict:
    slow, fast = (evidence.value("unlearncanvas", m, "storage_bytes") for m in ("salun", "slug"))
    verdict = ratio_verdict(slow, fast, 100.0, "patch sizes", "embedded model")
    return Verdict(verdict.reproduced, f"{verdict.ours}: {human_bytes(slow)} vs {human_bytes(fast)}", verdict.why)


def llava_forgets(evidence: Evidence) -> Verdict:
    before, after = evidence.original["llava"]["FA"], evidence.value("llava", "slug", "FA")
    vqa_before, vqa_after = evidence.original["llava"]["TA_VQA"], evidence.value("llava", "slug", "TA_VQA")
    id_before, id_after = evidence.original["llava"]["TA_ID"], evidence.value("llava", "slug", "TA_ID")
    ours = (f"FA {before:.1f} -> {after:.1f}; TA_VQA {vqa_before:.1f} -> {vqa_after:.1f}; "
            f"TA_ID {id_before:.1f} -> {id_after:.1f} (no published counterpart)")
    why = []
    if after > 5.0:
        why.append(f"FA after SLUG is {after:.1f}, above 5")
    if vqa_before - vqa_after > 5.0:
        why.append(f"TA_VQA fell {vqa_before - vqa_after:.1f} points")
    return Verdict(not why, ours, "; ".join(why))


CLAIMS = (
    Claim("clip", "SLUG forgets the identity (FA@1 0) and keeps the most ImageNet and CelebA accuracy of the "
          "methods that forget it", "FA@1 / TA_IN@1 / TA_CA@1: slug 0 / 59.96 / 58.32; ga 0 / 35.88 / 24.92; "
          "salun-ga 0 / 55.45 / 26.11; ssd-slug 0 / 51.84 / 35.96 (ViT-B-32)", best_retention),
    Claim("unlearncanvas", "SLUG's UA is on par with SalUn's (within 5 points)", "UA: slug 86.29, salun 86.26 "
          "(SD v1.5, style)", ua_on_par),
    Claim("unlearncanvas", "SLUG keeps IRA and CRA close to SalUn's (within 10 points)", "IRA / CRA: slug 84.59 / "
          "88.43, salun 90.39 / 95.08", retention_on_par),
    Claim("unlearncanvas", "SLUG runs at least 10x faster than SalUn (measured here)", "salun / slug = 17x "
          "(A100)", runtime_measured),
    Claim("unlearncanvas", "SLUG runs at least 10x faster than SalUn (projected to SD v1.5)", "salun / slug = "
          "17x (A100)", runtime_projected),
    Claim("unlearncanvas", "SLUG's patch is at least 100x smaller than SalUn's", "salun / slug = 100x: "
          "4.0 GB vs 0.04 GB", storage),
    Claim("llava", "SLUG drives FA from about 99.5 to at most 5 with the model's VQA utility held (within 5 "
          "points)", "FA 99.5 -> 2.8 (LLaVA-1.5-7B, 10 identities)", llava_forgets),
)


def evidence_from(records: dict[str, pd.DataFrame], projected_runtime: dict[str, pd.Series],
                  projection_device: str = "") -> Evidence:
    """Means per (method, metric) of each suite's ``after`` records and the base model's ``before`` ones."""
    means, original = {}, {}
    for suite, table in records.items():
        after, before = table[table.stage == "after"], table[table.stage == "before"]
        means[suite] = after.groupby(["method", "metric"]).value.mean().unstack()
        original[suite] = before.groupby("metric").value.mean()
    return Evidence(means, original, projected_runtime, projection_device)


def claims_table(evidence: Evidence) -> pd.DataFrame:
    """One row per claim: suite, the claim, the published numbers (‡: another model), ours, verdict, why."""
    rows = []
    for claim in CLAIMS:
        verdict = claim.check(evidence)
        rows.append({"suite": claim.suite, "claim": claim.claim, "published ‡": claim.published, "ours": verdict.ours,
                     "verdict": "reproduced" if verdict.reproduced else "not reproduced", "why not": verdict.why})
    return pd.DataFrame(rows)


FOOTNOTE = ("‡ published on the paper's models (ViT-B-32, SD v1.5, LLaVA-1.5-7B); ours are the embedded "
            "miniatures', so the check is the relation the paper claims, not its numbers (docs/PROTOCOLS.md).")

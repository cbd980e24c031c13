"""noop: returns the model unchanged — the pipeline check whose "after" rows equal its "before"."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.task import UnlearningTask


@dataclass(frozen=True)
class NoopConfig:
    pass


@register_method("noop")
class Noop(Method):
    """Changes nothing; its after-metrics must equal its before-metrics (pipeline check)."""

    Config = NoopConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})
    aims_to_forget = False  # the pipeline check: the contract requires that it changes nothing

    def unlearn(self, task: UnlearningTask) -> Outcome:
        return Outcome()

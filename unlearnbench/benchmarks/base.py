"""The suite interface: what a benchmark must provide to the runner.

A suite owns a base model and data (real or embedded), names its targets, builds an
``UnlearningTask`` per target, and scores a model on held-out test data. Metrics are declared so
reports know their direction and units.
"""

from __future__ import annotations

import csv
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from torch import nn

from unlearnbench.config import apply_overrides
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.records import Metric
from unlearnbench.registry import Registry
from unlearnbench.task import Batch, UnlearningTask


CONFIGURATIONS = ("embedded", "real")


@dataclass(frozen=True)
class SampleGrid:
    """Generated samples to show a person: one image per (row, column) prompt, tiled row-major, with the
    labels of its rows and columns and which row is the target's (None: no row is)."""

    image: np.ndarray  # uint8 (rows * H, columns * W, 3)
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    marked: int | None = None


class Suite(ABC):
    """Base class of benchmark suites. Subclasses set the class attributes and the methods."""

    name: ClassVar[str] = ""
    version: ClassVar[int]  # bump when the numbers a suite produces would change
    kind: ClassVar[str]  # the task kind its tasks have ("clip", "diffusion", "vlm")
    metrics: ClassVar[tuple[Metric, ...]]
    table_metrics: ClassVar[tuple[str, ...]]  # the columns of its paper table, in order
    plot_axes: ClassVar[tuple[str, str]]  # (forget metric, retain metric) of the forget-vs-retain plot
    # Metrics only validation reports (a goal's retain score, a search's forget score), described so
    # figures of methods' traces can name their axes in words; they reach the manifest with ``metrics``.
    validation_metrics: ClassVar[tuple[Metric, ...]] = ()
    Config: ClassVar[type]  # a dataclass whose ``config`` field is "embedded" or "real"
    # The iterative baselines' learning rate per configuration, unless the config's ``reference_lr``
    # or a method's own setting says otherwise.
    reference_lrs: ClassVar[dict[str, float]]

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if self.config.config not in CONFIGURATIONS:
            raise UnlearnBenchError(f"{self.name}: config={self.config.config!r}; expected "
                                    f"{' or '.join(repr(c) for c in CONFIGURATIONS)}")

    @property
    def embedded(self) -> bool:
        """Procedural data and small models trained here, rather than real data and weights."""
        return self.config.config == "embedded"

    def reference_lr(self) -> float:
        return self.config.reference_lr or self.reference_lrs[self.config.config]

    def resolved_settings(self) -> dict[str, Any]:
        """Settings left at None that the suite resolves to a value (its reference learning rate; a suite
        adds its own), shown with that value in the manifest and the report."""
        if getattr(self.config, "reference_lr", 0) is None and hasattr(type(self), "reference_lrs"):
            return {"reference_lr": self.reference_lr()}
        return {}

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @abstractmethod
    def model_id(self) -> str:
        """A fingerprint of the base model (its config hash or weights file), for caching."""

    @abstractmethod
    def base_model(self) -> nn.Module:
        """The model before unlearning (methods edit it in place; the runner restores it)."""

    @abstractmethod
    def targets(self) -> list[str]:
        """Every target this suite can unlearn, in a fixed order."""

    @abstractmethod
    def task(self, target: str) -> UnlearningTask:
        """A fresh task for ``target`` on the (unmodified) base model."""

    @abstractmethod
    def evaluate(self, model: nn.Module, target: str) -> dict[str, float]:
        """Test metrics of ``model`` for ``target`` (names from ``metrics``)."""

    def judges(self) -> dict[str, nn.Module]:
        """Models outside the unlearned one that score its outputs during a run (e.g. the classifiers of
        generated images), by component name: their passes are counted with the model's."""
        return {}

    def input_paths(self) -> dict[str, Path]:
        """The files and folders the suite reads, by setting: every setting whose default is None (``data``,
        ``weights``, ``model_path``, ...) set to a path that exists. Their files are part of every result's
        identity (runner.input_fingerprints), so data or weights replaced in place are recomputed."""
        paths = {}
        for setting in dataclasses.fields(self.config):
            value = getattr(self.config, setting.name)
            if setting.default is None and isinstance(value, str) and value and Path(value).expanduser().exists():
                paths[setting.name] = Path(value).expanduser().resolve()
        return paths

    def sample_grid(self, model: nn.Module, target: str) -> SampleGrid | None:
        """Generated samples to show a person, labelled, for generative suites; else None."""
        return None

    def example_answers(self, model: nn.Module, target: str) -> pd.DataFrame | None:
        """A few test questions with ``model``'s answers to show a person (question-answering suites:
        columns include ``question``, ``expected`` and ``answer``); else None."""
        return None

    # -- what attacks (unlearnbench/attacks/) need -----------------------------------------------------
    def attack_metrics(self) -> tuple[Metric, ...]:
        """The test metrics recorded after each attack variant (``FA@1|relearn-10``): all of them by default; a
        suite whose full evaluation is costly keeps the forget metrics and the ones that score retention."""
        return self.metrics

    def attack_evaluate(self, model: nn.Module, target: str) -> dict[str, float]:
        """``attack_metrics`` of ``model`` for ``target`` on test data."""
        names = {m.name for m in self.attack_metrics()}
        return {k: v for k, v in self.evaluate(model, target).items() if k in names}

    def attack_batches(self, target: str, n: int, batch_size: int) -> Callable[[], Iterator[Batch]]:
        """Batches (as the task's ``forget_batches`` gives them, for its ``forget_loss``) of ``n`` pairs of
        ``target`` that unlearning never saw, nor validation or test: what a relearning attack fine-tunes on
        and a prompt search scores against (docs/PROTOCOLS.md, "Attacks")."""
        raise UnlearnBenchError(f"suite {self.name!r} provides no held-out target pairs for attacks "
                                "(Suite.attack_batches)")

    def resolve_targets(self, spec: str | None) -> list[str]:
        """``None`` -> the first target; ``"5"`` -> the first five; else comma-separated names."""
        available = self.targets()
        if spec is None:
            return available[:1]
        if spec.strip().isdigit():
            k = int(spec)
            if not 1 <= k <= len(available):
                raise UnlearnBenchError(
                    f"--targets {k}: suite {self.name!r} has {len(available)} targets (1..{len(available)})")
            return available[:k]
        names = [t for t in target_names(spec) if t]
        for target in names:
            if target not in available:
                # "Smith, John" given unquoted arrives as "Smith" and "John"
                split = [t for t in available if "," in t and target in (p.strip() for p in t.split(","))]
                hint = (f"; a name with a comma is quoted as in CSV: --targets '\"{split[0]}\"'" if split else "")
                raise UnlearnBenchError(
                    f"unknown target {target!r} for suite {self.name!r}{hint}; targets: {', '.join(available)}")
        return names


def target_names(spec: str) -> list[str]:
    """``--targets`` as CSV: comma-separated names, a name that holds a comma in double quotes
    (``"Smith, John",Anne``); each stripped."""
    try:
        return [name.strip() for name in next(csv.reader([spec], skipinitialspace=True, strict=True), [])]
    except csv.Error as err:
        raise UnlearnBenchError(f"--targets {spec!r}: {err}; quote a name that holds a comma as in CSV: "
                                "'\"Smith, John\",Anne'") from None


SUITES: Registry[type[Suite]] = Registry("suite")


def register_suite(name: str):
    def add(cls: type[Suite]) -> type[Suite]:
        cls.name = name
        return SUITES.register(name)(cls)

    return add


def build_suite(name: str, overrides: dict[str, str] | None = None) -> Suite:
    cls = SUITES.get(name)
    return cls(apply_overrides(cls.Config(), overrides or {}, f"suite {name!r}"))

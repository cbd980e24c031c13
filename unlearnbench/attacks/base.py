"""The attack interface: does the forgetting survive what a user could do to the unlearned model?

An attack is a class with a frozen ``Config`` (its budget), the task kinds it supports, ``labels(suite)``
(the variants it records, e.g. ``relearn-10``) and ``attack(context)``, which returns the test metrics each
variant leaves behind. The unit (compute.py) runs every attack of a run on the unlearned model, and the
runner runs them on the base model too (the reference point); their metrics are recorded as
``<metric>|<label>`` (``FA@1|relearn-10``) and their costs as ``<cost>|<attack>`` (``runtime_s|relearn``),
with the suite metric's direction, so tables, plots and ``bench.py compare`` read them like any other.

An attack leaves the model as it found it: every variant runs inside ``context.scratch()``, which puts
back every tensor when it ends (``unlearnbench.testing.check_attack`` checks it).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from unlearnbench.benchmarks.base import Suite
from unlearnbench.config import apply_overrides
from unlearnbench.costs import CostMeter
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.identity import model_fingerprint
from unlearnbench.patch import restored_weights
from unlearnbench.records import Metric
from unlearnbench.registry import Registry
from unlearnbench.task import UnlearningTask

SEPARATOR = "|"  # metric|variant: "FA@1|relearn-10"
COSTS = ("runtime_s", "forward_samples", "backward_samples")  # recorded per attack as "runtime_s|relearn"


@dataclass
class AttackContext:
    """What an attack gets: the suite (its test metrics and attack hooks), the unit's task (losses, batches,
    the reference learning rate; ``task.model`` is the model under attack), the tensors the method changed
    (empty for the base model), the unit's seed and a cost meter of its own."""

    suite: Suite
    task: UnlearningTask
    changed: tuple[str, ...]
    seed: int
    costs: CostMeter = field(default_factory=CostMeter)
    # The base model's weights where the model under attack is an unlearned one (None: it is the base model).
    base_state: dict[str, torch.Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        return self.task.model

    @property
    def target(self) -> str:
        return self.task.target

    @contextmanager
    def scratch(self) -> Iterator[None]:
        """Edit the model freely inside; every tensor is put back when the block ends, however it ends."""
        with restored_weights(self.model):
            yield

    @contextmanager
    def base_weights(self) -> Iterator[None]:
        """The base model's weights inside the block, the attacked ones again after it: where an attack asks the
        suite for data the base model makes (``Suite.attack_batches`` of a generative suite)."""
        with restored_weights(self.model):
            if self.base_state is not None:
                self.model.load_state_dict(self.base_state)
            yield

    def evaluate(self) -> dict[str, float]:
        """The suite's attack metrics of the model as it is now (test data; not counted as the attack's cost)."""
        with torch.no_grad():
            return self.suite.attack_evaluate(self.model, self.target)


class Attack(ABC):
    """Base class of attacks. Subclasses set ``Config``, ``kinds``, ``labels`` and ``attack``."""

    Config: ClassVar[type]
    kinds: ClassVar[frozenset[str]]
    name: ClassVar[str] = ""

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    def check(self, suite: Suite) -> None:  # noqa: B027 - an optional hook
        """Raise UnlearnBenchError if these settings cannot run on ``suite`` (called before any unit runs)."""

    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """The variants this configuration records, in order (``relearn-10``, ``quantize-int8``, ...)."""

    def metrics(self, suite: Suite) -> tuple[Metric, ...]:
        """The metrics its variants record: by default each of the suite's attack metrics per label."""
        return tuple(attacked(metric, label) for label in self.labels() for metric in suite.attack_metrics())

    @abstractmethod
    def attack(self, context: AttackContext) -> dict[str, dict[str, float]]:
        """label -> the metrics the model has after that variant; the model left as it was found."""


def attacked(metric: Metric, label: str) -> Metric:
    """``metric`` measured after the attack variant ``label``: same split, unit, direction and tolerance."""
    return dataclasses.replace(metric, name=f"{metric.name}{SEPARATOR}{label}",
                               about=f"{metric.about or metric.name}, after the attack {label}")


def cost_metrics(name: str) -> tuple[Metric, ...]:
    """What attack ``name`` cost, per unit: wall time of its work and its sample passes (not its evaluation)."""
    return (Metric(f"runtime_s{SEPARATOR}{name}", "cost", False, unit="s", tolerance=None,
                   about=f"wall time of the attack {name} (its evaluations excluded)"),
            *(Metric(f"{c}{SEPARATOR}{name}", "cost", False, unit="count", tolerance=None,
                     about=f"{c.replace('_', ' ')} of the attack {name}") for c in COSTS[1:]))


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str):
    """Register an Attack subclass under ``name`` (sets ``cls.name``); refuses a class without a docstring
    or whose ``Config`` is not a frozen dataclass, as ``register_method`` does."""

    def add(cls: type[Attack]) -> type[Attack]:
        where = f"attack class {cls.__module__}.{cls.__qualname__} (registering {name!r})"
        if not (cls.__doc__ or "").strip():
            raise UnlearnBenchError(f"{where} has no docstring; add one whose first line says what it does")
        config = getattr(cls, "Config", None)
        if not (isinstance(config, type) and dataclasses.is_dataclass(config)
                and config.__dataclass_params__.frozen):
            raise UnlearnBenchError(f"{where}: Config = {config!r} is not a frozen dataclass; declare its "
                                    "settings as @dataclass(frozen=True) with defaults")
        ATTACKS.register(name)(cls)
        cls.name = name
        return cls

    return add


def build_attack(name: str, overrides: dict[str, str] | None = None) -> Attack:
    """Instantiate a registered attack, applying ``field=value`` overrides to its Config."""
    cls = ATTACKS.get(name)
    return cls(apply_overrides(cls.Config(), overrides or {}, f"attack {name!r}"))


def run_attacks(attacks: list[Attack], suite: Suite, task: UnlearningTask, changed: tuple[str, ...],
                seed: int, base_state: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Every attack on ``task.model`` under ``seed``: its variants' metrics and its costs, as records name them;
    ``base_state``: the base model's weights where ``task.model`` is unlearned. The model is checked to be as it
    was after each attack."""
    values: dict[str, float] = {}
    for attack in attacks:
        # A task of its own, so the losses' forward passes count as the attack's cost, not the method's.
        context = AttackContext(suite, dataclasses.replace(task, costs=CostMeter()), changed, seed,
                                base_state=base_state)
        context.costs = context.task.costs
        before = model_fingerprint(task.model)  # a hash, not a copy: a real model's weights are gigabytes
        torch.manual_seed(seed)
        results = attack.attack(context)
        if model_fingerprint(task.model) != before:
            raise UnlearnBenchError(f"attack {attack.name!r} left the model's weights changed; an attack must edit "
                                    "the model inside context.scratch()")
        for label, metrics in results.items():
            values.update({f"{metric}{SEPARATOR}{label}": value for metric, value in metrics.items()})
        costs = context.costs
        values.update({f"runtime_s{SEPARATOR}{attack.name}": costs.runtime_s,
                       f"forward_samples{SEPARATOR}{attack.name}": float(costs.forward_samples),
                       f"backward_samples{SEPARATOR}{attack.name}": float(costs.backward_samples)})
    return values


def check_budget(value: int | tuple[int, ...], setting: str, attack: str) -> None:
    """A budget (steps, samples, candidates) is a whole number of at least 1; else one line naming it."""
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UnlearnBenchError(f"attack {attack!r}: {setting}={value!r}; give whole numbers of at least 1 "
                                    f"(--attack-set {attack}.{setting}=...)")

"""The method interface and the registry every method joins.

A method is a class with a frozen ``Config`` dataclass (the paper's defaults), the task kinds it
supports, and ``unlearn(task)``, which leaves the unlearned weights in ``task.model`` and returns
an ``Outcome``. The runner snapshots the base weights before and turns what changed into a patch,
so a method never has to know how results are stored.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from unlearnbench.config import apply_overrides
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.registry import Registry
from unlearnbench.task import UnlearningTask


@dataclass
class Outcome:
    """What a method reports besides the edited model.

    ``trace``: one row per trial or epoch (validation metrics, step sizes, layers...), written to
    the run folder. ``info``: scalar facts about the run (chosen layer, whether the goal was met).
    ``tables``: extra named DataFrames for reports (e.g. SLUG's per-layer statistics).
    """

    trace: pd.DataFrame = field(default_factory=pd.DataFrame)
    info: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class Method(ABC):
    """Base class of unlearning methods. Subclasses set ``Config``, ``kinds`` and ``unlearn``."""

    Config: ClassVar[type]
    kinds: ClassVar[frozenset[str]]
    name: ClassVar[str] = ""
    # False for methods that by design do not try to forget (the noop pipeline check, retain-only
    # fine-tuning): the contract checks (unlearnbench.testing) then require that they do no harm
    # (no change at all, or a lower retain loss) instead of requiring the forget goal.
    aims_to_forget: ClassVar[bool] = True

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def supports(cls, kind: str) -> bool:
        return kind in cls.kinds

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring, for ``bench.py ls``."""
        return (cls.__doc__ or "").strip().splitlines()[0]

    def check(self, task: UnlearningTask) -> None:  # noqa: B027 - an optional hook: most methods accept any task
        """Raise UnlearnBenchError if this configuration cannot run on ``task`` (e.g. a forced layer
        that is not a candidate). The runner calls it for every method before any unit runs, so a
        bad setting fails in seconds, not after other methods have finished."""

    @abstractmethod
    def unlearn(self, task: UnlearningTask) -> Outcome:
        """Unlearn ``task.target`` from ``task.model`` in place and report what happened."""


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str):
    """Register a Method subclass under ``name`` (also sets ``cls.name``).

    Rejects, with an UnlearnBenchError naming the class and the fix, a name already taken, a class
    without a docstring (its first line is what ``bench.py ls`` shows) and a ``Config`` that is not
    a frozen dataclass (results must trace back to an immutable, hashable configuration).
    """

    def add(cls: type[Method]) -> type[Method]:
        where = f"method class {cls.__module__}.{cls.__qualname__} (registering {name!r})"
        if not (cls.__doc__ or "").strip():
            raise UnlearnBenchError(f"{where} has no docstring; add one whose first line says what it does "
                                    "(bench.py ls shows it)")
        config = getattr(cls, "Config", None)
        if not (isinstance(config, type) and dataclasses.is_dataclass(config)
                and config.__dataclass_params__.frozen):
            raise UnlearnBenchError(f"{where}: Config = {config!r} is not a frozen dataclass; declare its "
                                    "settings as @dataclass(frozen=True) class ...Config with defaults")
        METHODS.register(name)(cls)  # a taken name fails here, naming both classes
        cls.name = name
        return cls

    return add


def build_method(name: str, overrides: dict[str, str] | None = None) -> Method:
    """Instantiate a registered method, applying ``field=value`` overrides to its Config."""
    cls = METHODS.get(name)
    return cls(apply_overrides(cls.Config(), overrides or {}, f"method {name!r}"))

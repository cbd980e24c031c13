"""A small generic registry: ``@METHODS.register("slug")`` and ``METHODS.get("slug")``.

Modelled on lm-evaluation-harness: duplicates are rejected at import time (an UnlearnBenchError, so a
plugin that reuses a name fails with one line) and an unknown name fails with the closest matches and
the full list, so a typo never becomes a silent default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from unlearnbench.errors import UnlearnBenchError

T = TypeVar("T")


def describe(obj: object) -> str:
    """``module.Class`` for classes and functions, so a duplicate names both places it was defined."""
    qualname = getattr(obj, "__qualname__", None)
    return f"{obj.__module__}.{qualname}" if qualname and hasattr(obj, "__module__") else repr(obj)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise UnlearnBenchError(
                    f"{self.kind} {name!r} is registered twice ({describe(self._entries[name])} and {describe(obj)}); "
                    f"register {describe(obj)} under another name")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnlearnBenchError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names())}.")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

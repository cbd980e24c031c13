"""``key=value`` overrides for the frozen config dataclasses of methods and suites."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from unlearnbench.errors import UnlearnBenchError

C = TypeVar("C")


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; anything without ``=`` is an error."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UnlearnBenchError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(config: C, overrides: dict[str, str], owner: str) -> C:
    """A copy of ``config`` with the string ``overrides`` parsed to each field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    parsed: dict[str, Any] = {}
    for key, text in overrides.items():
        if key not in fields:
            raise UnlearnBenchError(
                f"{owner} has no setting {key!r}; its settings are: {', '.join(sorted(fields))}")
        current = getattr(config, key)
        parsed[key] = _coerce(text, current, f"{owner}.{key}", optional(fields[key], current))
    return dataclasses.replace(config, **parsed)


def optional(field: dataclasses.Field, current: Any) -> bool:
    """Whether a setting may be None: its value is, or its annotation says so (``int | None``)."""
    return current is None or "None" in str(field.type) or "Optional" in str(field.type)


def _coerce(text: str, current: Any, where: str, may_be_none: bool = True) -> Any:
    if text.lower() in ("none", "null"):
        if not may_be_none:
            raise UnlearnBenchError(f"{where}={text!r}: this setting takes a {type(current).__name__} and has no "
                                    "'none' (only settings whose default is none accept it)")
        return None
    value = _parse(text, current, where)
    # NaN and infinity compare false with everything (a threshold would never be met) and are not JSON.
    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
        raise UnlearnBenchError(f"{where}={text!r} is not a finite number; give one like 0.5")
    return value


def _parse(text: str, current: Any, where: str) -> Any:
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            kind = type(current[0]) if current else str
            return tuple(kind(v) for v in text.split(","))
        if dataclasses.is_dataclass(current):
            raise UnlearnBenchError(f"{where} is a nested setting and cannot be set from the command line")
    except ValueError:
        raise UnlearnBenchError(
            f"{where}={text!r} is not a valid {type(current).__name__}") from None
    if current is None:
        # Optional settings take a number where one parses, else the text.
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                pass
    return text


def as_text(value: Any) -> str:
    """A setting as the command line writes it: the inverse of ``apply_overrides`` (``None`` -> "none",
    tuples comma-separated, floats exactly)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def choose_preset(presets: dict[str, C], name: str, what: str) -> C:
    """``presets[name]``, or an error naming ``what`` and the presets there are."""
    if name not in presets:
        raise UnlearnBenchError(f"unknown embedded {what} preset {name!r}; presets: {', '.join(presets)}")
    return presets[name]


def check_counts(config: object, fields: tuple[str, ...], owner: str) -> None:
    """Reject a count setting (batch size, samples, steps) below 1; None stays allowed (it means a default)."""
    for name in fields:
        value = getattr(config, name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UnlearnBenchError(f"{owner}: {name}={value!r}; it counts something, so it must be a whole number "
                                    f"of at least 1 (e.g. --set {name}=1)")


def check_device(device: str, owner: str) -> None:
    """Reject a device string torch cannot parse, or an accelerator torch does not see here."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UnlearnBenchError(f"{owner}: device={device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UnlearnBenchError(f"{owner}: device={device!r}, but torch sees no CUDA device here "
                                    f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                                    "use --set device=cpu")
        if parsed.index is not None and parsed.index >= count:
            raise UnlearnBenchError(f"{owner}: device={device!r}, but torch sees {count} CUDA device(s) "
                                    f"(cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UnlearnBenchError(f"{owner}: device={device!r}, but torch sees no MPS device here; use --set device=cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise UnlearnBenchError(f"{owner}: device={device!r} is not supported; use cpu, cuda or cuda:N")


def setting_help(config_cls: type) -> dict[str, str]:
    """One line of help per field of a config dataclass, read from its source comments: the
    trailing ``# ...`` on the field's line, else the comment block right above it (first sentence).
    An inherited field takes its help from the nearest class in the MRO that comments it."""
    found: dict[str, str] = {}
    for klass in config_cls.__mro__:
        if dataclasses.is_dataclass(klass):
            for name, text in _field_comments(klass).items():
                found.setdefault(name, text)
    return {f.name: found.get(f.name, "") for f in dataclasses.fields(config_cls)}


def _field_comments(klass: type) -> dict[str, str]:
    import ast
    import inspect
    import io
    import re
    import textwrap
    import tokenize

    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # defined interactively: no source to read
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        block, n = [], node.lineno - 1
        while n in comments and lines[n - 1].lstrip().startswith("#"):
            block.insert(0, comments[n])
            n -= 1
        text = trailing[0] if trailing else " ".join(block)
        out[node.target.id] = re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0] if text else ""
    return out

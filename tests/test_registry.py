import pytest

from unlearnbench.benchmarks.base import SUITES
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import METHODS
from unlearnbench.registry import Registry


def test_register_and_get():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    assert reg.get("alpha") == 1
    assert "alpha" in reg and len(reg) == 1


def test_duplicate_is_rejected():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    with pytest.raises(UnlearnBenchError, match="thing 'alpha' is registered twice .*register .* under another name"):
        reg.register("alpha")(2)


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UnlearnBenchError) as err:
        METHODS.get("slugg")
    message = str(err.value)
    assert "Did you mean 'slug'" in message
    assert "Available:" in message and "noop" in message


def test_unknown_suite_lists_suites():
    with pytest.raises(UnlearnBenchError, match="Unknown suite 'clpi'.*'clip'"):
        SUITES.get("clpi")


def test_builtins_registered():
    assert {"slug", "noop"} <= set(METHODS.names())
    assert "clip" in SUITES.names()


def test_register_method_rejects_a_mutable_config(monkeypatch):
    from dataclasses import dataclass

    from unlearnbench.methods.base import Method, register_method

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))

    @dataclass
    class LooseConfig:
        lr: float = 1.0

    class Loose(Method):
        """A method whose settings could change after its results were recorded."""

        Config = LooseConfig
        kinds = frozenset({"clip"})

        def unlearn(self, task):
            raise NotImplementedError

    with pytest.raises(UnlearnBenchError, match="Loose.*not a frozen dataclass.*frozen=True"):
        register_method("loose")(Loose)
    assert "loose" not in METHODS

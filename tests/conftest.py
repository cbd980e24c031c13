"""Shared fixtures: a micro embedded CLIP suite trained once per session in a private cache."""

from __future__ import annotations

import pytest

import unlearnbench.benchmarks  # noqa: F401 - registers the suites
import unlearnbench.methods  # noqa: F401 - registers the methods
from unlearnbench.benchmarks.clip import ClipSuite, ClipSuiteConfig

# FA@1 as the goal: with 10 identities, FA@5 = 0 asks the target out of the top half of all names.
MICRO = ClipSuiteConfig(embedded="micro", retain_samples=128, batch_size=32, forget_metric="FA@1")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep tests away from the user's cache; trained micro models live for the session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("UNLEARNBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def micro_suite(private_cache) -> ClipSuite:
    suite = ClipSuite(MICRO)
    suite.assets  # train (seconds) before the tests that time nothing
    return suite

"""Speed checks with pytest-benchmark. The default run executes each once (``--benchmark-disable``
in pyproject.toml) so they stay correct; measure with ``pytest tests/test_benchmarks.py
--benchmark-enable``."""

import torch

from unlearnbench.methods.slug import Slug, SlugConfig


def test_benchmark_validation_after_a_vision_edit(benchmark, micro_suite):
    task = micro_suite.task(micro_suite.targets()[0])
    task.base_validation()
    metrics = benchmark(task.validate, task.model, {"visual.proj"})
    assert metrics["FA@1"] == task.base_validation()["FA@1"]  # unchanged weights, same numbers


def test_benchmark_slug_unlearning(benchmark, micro_suite):
    def unlearn_and_restore():
        task = micro_suite.task(micro_suite.targets()[0])
        base = {k: v.clone() for k, v in task.model.state_dict().items()}
        torch.manual_seed(0)
        outcome = Slug(SlugConfig(search_steps=6)).unlearn(task)
        task.model.load_state_dict(base)
        return outcome

    outcome = benchmark.pedantic(unlearn_and_restore, rounds=1, iterations=1)
    assert outcome.info["goal_met"]

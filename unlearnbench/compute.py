"""Computing one unit of a run: from a ``UnitJob`` (plain values) to a ``UnitOutput`` (records, artifacts,
info), in this process (the sequential executor) or a Ray worker (``executors.run_job``).

The runner (runner.py) decides which units to compute and stores what this returns; executors
(executors.py) decide where it runs. Both import this module, and it imports neither.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from unlearnbench import records as rec
from unlearnbench.attacks.base import build_attack, run_attacks
from unlearnbench.benchmarks.base import SampleGrid, Suite
from unlearnbench.cache import atomic_write, config_hash
from unlearnbench.costs import OtherLoad
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.identity import digest
from unlearnbench.methods.base import Method
from unlearnbench.patch import Patch, patch_metadata, restored_weights, stored_payload_bytes
from unlearnbench.passes import PassCounter, model_components
from unlearnbench.task import UnlearningTask


def unit_name(target: str, method: Method, seed: int) -> str:
    """Readable and collision-free: the target's characters that are safe in a file name, and a hash
    of the exact target string (``Anne O'Neil`` and ``Anne O Neil`` are two units)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)[:48]
    return f"{safe}-{digest(target, 8)}__{method.name}-{config_hash(method.config)}__seed{seed}"


@dataclass
class UnitJob:
    """One unit to compute, as plain values, so another process (a Ray worker) can rebuild the suite
    and method from them (``executors.run_job``) and compute it exactly as this one would."""

    suite: str
    suite_overrides: dict[str, str]
    method: str
    method_overrides: dict[str, str]
    target: str
    seed: int
    run_dir: str
    identity: dict  # the unit's identity (JSON-normalised); a worker checks its suite and method against it
    before: dict[str, float]  # the base model's test metrics for the target
    keys: dict  # the record keys (run id, suite, model, target, method, config hash, seed)
    modules: tuple[str, ...] = ()  # modules that register the suite and the method (plugins included)
    # The run's attacks (unlearnbench/attacks/) as (name, settings as text), run on the unlearned model.
    attacks: tuple[tuple[str, dict[str, str]], ...] = ()


@dataclass
class UnitOutput:
    """What computing a unit returns: its records, its artifact tables and its info. The patch, sample
    grid and example answers are already written (atomically) into the run folder."""

    frame: pd.DataFrame
    artifacts: dict[str, pd.DataFrame]
    info: dict
    identity: dict  # the identity it was computed under, stored with it (``job.identity``)


def compute_unit(suite: Suite, method: Method, job: UnitJob) -> UnitOutput:
    """Unlearn ``job.target`` with ``method`` on ``suite``'s base model (restored afterwards, also on
    failure), write the patch (and sample grid / example answers) into the run folder, and return the
    unit's records, artifacts and info; the caller stores them (``Unit.store``)."""
    with OtherLoad() as load:  # what other processes took of the CPUs while this unit was timed
        output = _compute_unit(suite, method, job)
    output.info["other_cpu_percent"] = round(load.percent, 1)
    return output


def _compute_unit(suite: Suite, method: Method, job: UnitJob) -> UnitOutput:
    target, seed, run_dir = job.target, job.seed, Path(job.run_dir)
    name = unit_name(target, method, seed)
    task = suite.task(target)
    model = task.model
    samples_before = suite.sample_grid(model, target)
    answers_before = suite.example_answers(model, target)
    with restored_weights(model) as base_state:
        torch.manual_seed(seed)
        counter = PassCounter({**model_components(model), **{n: [m] for n, m in suite.judges().items()}})
        with task.costs.track_memory(task.device), counter.counting():
            outcome = method.unlearn(task)
        costs = task.costs.as_metrics()  # before the goal check below adds its own validation
        check_finite(model, method.name, target)
        patch = Patch.diff(base_state, model, patch_metadata(
            method=method.name, target=target, seed=seed, config=asdict(method.config), **outcome.info))
        patch_file = run_dir / "patches" / f"{name}.safetensors"
        patch.save(patch_file)
        validation = task.validate(model, set(patch.tensors))
        start = time.perf_counter()
        after = suite.evaluate(model, target)
        eval_seconds = time.perf_counter() - start
        if job.attacks:  # on the unlearned model, before the base weights come back
            after.update(run_attacks(build_attacks(job.attacks), suite, task, tuple(patch.tensors), seed, base_state))
        if samples_before is not None:
            save_samples(samples_before, suite.sample_grid(model, target), run_dir / "samples" / f"{name}.png",
                         f"{target} — {method.name}, seed {seed}")
        if answers_before is not None:
            save_answers(answers_before, suite.example_answers(model, target),
                         run_dir / "answers" / f"{name}.parquet")
    costs.update(storage_bytes=float(stored_payload_bytes(patch_file)), changed_tensors=float(len(patch.tensors)),
                 eval_seconds=eval_seconds)
    after = {**after, **goal_status(task, validation), **costs}
    frame = pd.concat([rec.make_records(job.before, stage="before", **job.keys),
                       rec.make_records(after, stage="after", **job.keys)], ignore_index=True)
    artifacts = {k: v for k, v in {"trace": outcome.trace, **outcome.tables, "passes": counter.table()}.items()
                 if len(v)}
    info = {"target": target, "method": method.name, "config_hash": job.keys["config_hash"], "seed": seed,
            "code_fingerprint": job.identity["code_fingerprint"], "goal": asdict(task.goal),
            "resolved": dict(task.resolved),  # settings left at none and the values the task gave them
            "computed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return UnitOutput(frame, artifacts, info, job.identity)


def build_attacks(specs: tuple[tuple[str, dict[str, str]], ...]) -> list:
    """The attacks named in a job, built from their settings as text (registering the built-in ones first)."""
    import unlearnbench.attacks  # noqa: F401 - registers the built-in attacks

    return [build_attack(name, overrides) for name, overrides in specs]


def goal_status(task: UnlearningTask, validation: dict[str, float]) -> dict[str, float]:
    """Whether the unlearned model meets the task's goal on validation, judged by the runner for
    every method alike (a method's own claim is not trusted), with the two values judged."""
    goal = task.goal
    return {"goal_met": float(goal.met(validation, task.base_validation())),
            "val_forget": validation[goal.forget_metric], "val_retain": validation[goal.retain_metric]}


def save_samples(before: SampleGrid, after: SampleGrid, path: Path, title: str = "") -> None:
    """Before | after side by side, every row and column labelled, the target's row marked
    (``reports/plots.py``: a figure for a person; the numbers come from the suite's scores)."""
    from unlearnbench.reports.plots import sample_grid

    sample_grid(before.image, after.image, before.rows, before.columns, before.marked, path, title)


def save_answers(before: pd.DataFrame, after: pd.DataFrame, path: Path) -> None:
    """The same questions answered before and after unlearning, as a table (parquet): the report renders it."""
    table = before.rename(columns={"answer": "before"}).assign(after=after["answer"].to_numpy())
    atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


def check_finite(model: torch.nn.Module, method: str, target: str) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise UnlearnBenchError(
            f"method {method!r} left non-finite weights in {len(bad)} tensors (first: {bad[0]}) while "
            f"unlearning {target!r}; its loss diverged — lower its learning rate or step size")

"""The experiment loop: for each (target, method, seed): evaluate before -> unlearn -> evaluate after.

Every finished unit is written atomically under ``runs/<run-id>/units/`` by this process as it finishes
(one after another, or in completion order when an executor computes units in parallel: executors.py),
together with the identity that produced it: suite and full suite config, a content fingerprint of
the base model, the exact target, method and full method config, seed, and the fingerprint of the
code it ran through (``unlearnbench.identity``). A rerun reuses a unit only when that identity is
unchanged and recomputes it otherwise, so an interrupted run resumes and a changed method, setting
or model never hides behind old numbers. Base-model evaluations are cached across runs under the
same rule. One process at a time works in a run folder (a lock file). The model is restored to
its base weights after every unit, whatever happens.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from unlearnbench import records as rec
from unlearnbench.benchmarks.base import Suite, build_suite
from unlearnbench.cache import (atomic_write, atomic_write_text, cache_dir, check_writable_folder, config_hash,
                                read_cached)
from unlearnbench.costs import OtherLoad
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.identity import code_fingerprint, digest, files_fingerprint, library_versions, model_fingerprint
from unlearnbench.methods.base import METHODS, Method, build_method
from unlearnbench.patch import Patch, patch_metadata, restored_weights, stored_payload_bytes
from unlearnbench.passes import PassCounter, model_components
from unlearnbench.records import metric_metadata
from unlearnbench.task import UnlearningTask

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs in one folder are not detected
    fcntl = None

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    suite: str
    methods: list[str]
    suite_overrides: dict[str, str] = field(default_factory=dict)
    method_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    targets: str | None = None  # None: the suite's first target; "k": the first k; or names
    seeds: tuple[int, ...] = (0,)
    out_dir: Path = Path("runs")
    run_id: str | None = None
    executor: str = "sequential"  # how units that are not reused are computed: sequential or ray (executors.py)
    address: str | None = None  # ray: an existing cluster's address; None: a local cluster on this machine's CPUs


@dataclass
class RunResult:
    run_dir: Path
    records: pd.DataFrame
    manifest: dict
    artifacts: dict[str, pd.DataFrame]  # "<unit>/<name>" -> table (traces, SLUG layer statistics)
    reused: int = 0  # units whose stored records were reused
    stale: dict[str, str] = field(default_factory=dict)  # unit -> why its stored records were not reused

    @property
    def units(self) -> int:
        return len(self.manifest["units"])

    def reuse_line(self) -> str:
        """``reused N of M units``, with why any stored unit was recomputed."""
        line = f"reused {self.reused} of {self.units} units"
        if self.stale:
            reasons = sorted(set(self.stale.values()))
            line += f"; recomputed {len(self.stale)} whose stored result was out of date ({'; '.join(reasons)})"
        return line


def prepare(spec: RunSpec, suite: Suite | None = None) -> tuple[Suite, list[Method]]:
    """Build the suite (unless given) and methods and check they fit, before any expensive work."""
    if not spec.methods:
        raise UnlearnBenchError(f"no methods given; available: {', '.join(METHODS.names())}")
    suite = suite or build_suite(spec.suite, spec.suite_overrides)
    unknown_overrides = set(spec.method_overrides) - set(spec.methods)
    if unknown_overrides:
        raise UnlearnBenchError(f"settings given for methods not in the run: {sorted(unknown_overrides)}")
    methods = [build_method(name, spec.method_overrides.get(name)) for name in spec.methods]
    for method in methods:
        if not method.supports(suite.kind):
            fits = [n for n, cls in METHODS.items() if cls.supports(suite.kind)]
            raise UnlearnBenchError(
                f"method {method.name!r} does not support suite {suite.name!r} (task kind {suite.kind!r}); "
                f"methods that do: {', '.join(fits)}")
    return suite, methods


def run(spec: RunSpec, suite: Suite | None = None) -> RunResult:
    """Run ``spec``; pass ``suite`` to reuse an already built (and loaded) suite."""
    from unlearnbench.executors import make_executor

    suite, methods = prepare(spec, suite)
    executor = make_executor(spec, suite)  # e.g. Ray missing: fails before any work
    targets = suite.resolve_targets(spec.targets)
    run_id = spec.run_id or default_run_id(suite, methods, targets, spec.seeds)
    run_dir = Path(spec.out_dir) / run_id
    log.info("run %s: suite %s, methods %s, targets %s, seeds %s, executor %s", run_id, suite.name,
             [m.name for m in methods], targets, list(spec.seeds), executor.name)

    check_methods(suite, methods, targets[0])  # before the run folder is touched
    if run_dir.exists():  # resumed: a folder that cannot take files fails now, not after the first unit
        check_run_folder(run_dir)
    with run_lock(run_dir), executor:
        remove_leftover_temp_files(run_dir)
        model_fp = model_fingerprint(suite.base_model())
        code_fps = {m.name: code_fingerprint(type(m), type(suite)) for m in methods}
        suite_code_fp = code_fingerprint(type(suite))
        libraries, inputs = library_versions(), input_fingerprints(suite)
        # One slot per unit in (target, method, seed) order, filled as units are reused or finish
        # (in completion order on a parallel executor), so records never depend on the executor.
        slots: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]] = {}
        stale: dict[str, str] = {}

        def finished(unit: Unit, output: UnitOutput) -> None:
            slots[unit.name] = unit.store(output)  # written atomically here, by this process, as each finishes

        for target in targets:
            before = base_evaluation(suite, target, model_fp, suite_code_fp, inputs)
            for method in methods:
                for seed in spec.seeds:
                    unit = Unit(suite, method, target, seed, run_dir, {
                        "suite": suite.name, "suite_version": suite.version, "suite_config": asdict(suite.config),
                        "model_fingerprint": model_fp, "target": target, "method": method.name,
                        "method_config": asdict(method.config), "seed": seed,
                        "code_fingerprint": code_fps[method.name], "libraries": libraries, "inputs": inputs})
                    slots[unit.name] = None
                    stored = unit.reuse()
                    if unit.stale:
                        stale[unit.name] = unit.stale
                    if stored is not None:
                        slots[unit.name] = stored
                        continue
                    keys = dict(run_id=run_id, suite=suite.name, suite_version=suite.version, model=suite.model_id(),
                                target=target, method=method.name, config_hash=config_hash(method.config), seed=seed)
                    job = UnitJob(suite=suite.name, suite_overrides=dict(spec.suite_overrides), method=method.name,
                                  method_overrides=dict(spec.method_overrides.get(method.name, {})), target=target,
                                  seed=seed, run_dir=str(run_dir), identity=unit.identity, before=before, keys=keys,
                                  modules=(type(suite).__module__, type(method).__module__))
                    executor.submit(job, suite, method, lambda output, unit=unit: finished(unit, output))
        executor.wait()
        frames = [frame for frame, _, _ in slots.values()]
        artifacts = {f"{name}/{kind}": table for name, (_, unit_artifacts, _) in slots.items()
                     for kind, table in unit_artifacts.items()}
        units = {name: info for name, (_, _, info) in slots.items()}
        records = pd.concat(frames, ignore_index=True)
        rec.write(records, run_dir / "records.parquet")
        manifest = make_manifest(spec, suite, methods, targets, run_id, model_fp, units)
        atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    reused = sum(info["reused"] for info in units.values())
    return RunResult(run_dir, records, manifest, artifacts, reused=reused, stale=stale)


def check_methods(suite: Suite, methods: list[Method], target: str) -> None:
    """Let each method reject its settings on a real task before any unit runs (Method.check)."""
    checking = [m for m in methods if type(m).check is not Method.check]
    if checking:
        task = suite.task(target)
        for method in checking:
            method.check(task)


# The folders of a run folder that a run writes into (reports write plots/).
RUN_FOLDERS = ("units", "artifacts", "patches", "samples", "answers", "plots")


def check_run_folder(run_dir: Path) -> None:
    """An existing run folder, its lock file and the folders units are written to must take files."""
    for folder in (run_dir, *(run_dir / name for name in RUN_FOLDERS if (run_dir / name).exists())):
        check_writable_folder(folder, "run folder")
    lock = run_dir / ".lock"
    if lock.exists() and not lock.is_file():
        raise UnlearnBenchError(f"run folder {run_dir}: its lock file {lock} is not a file; remove it, or give this "
                                "run another --run-id")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the whole run, so two processes never compute the same units."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / ".lock", "a+") if fcntl is not None else None
    except OSError as err:
        raise UnlearnBenchError(f"run folder {run_dir} cannot be written ({err.strerror or err}); make it writable, "
                                "or give --out / --run-id a folder you can write in") from None
    if handle is None:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnlearnBenchError(
                f"run folder {run_dir} is in use by another bench.py process; wait for it to finish, "
                "or give this run another --run-id") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftover_temp_files(run_dir: Path) -> None:
    """Temporary files of an interrupted atomic write (the run folder is locked, so none is live)."""
    for tmp in run_dir.rglob(".*.tmp"):
        log.info("removing %s, left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def unit_name(target: str, method: Method, seed: int) -> str:
    """Readable and collision-free: the target's characters that are safe in a file name, and a hash
    of the exact target string (``Anne O'Neil`` and ``Anne O Neil`` are two units)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)[:48]
    return f"{safe}-{digest(target, 8)}__{method.name}-{config_hash(method.config)}__seed{seed}"


@dataclass
class Unit:
    """One (target, method, seed) of a run: its files, and the identity that decides reuse."""

    suite: Suite
    method: Method
    target: str
    seed: int
    run_dir: Path
    identity: dict
    stale: str = field(default="", init=False)  # why a stored result of this unit was not reused

    def __post_init__(self) -> None:
        self.name = unit_name(self.target, self.method, self.seed)
        self.file = self.run_dir / "units" / f"{self.name}.parquet"
        # JSON-normalised (tuples become lists) so it compares equal to what was stored.
        self.identity = json.loads(json.dumps(self.identity, default=str))

    def artifact_file(self, kind: str) -> Path:
        return self.run_dir / "artifacts" / f"{self.name}__{kind}.parquet"

    def reuse(self) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict] | None:
        """The stored unit if it was computed with this very identity; else None (recompute)."""
        if not self.file.is_file():
            return None
        try:
            stored = rec.read_metadata(self.file)
            frame = rec.read(self.file)
            artifacts = {kind: pd.read_parquet(self.artifact_file(kind)) for kind in stored.get("artifacts", [])}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("unit file %s or its artifacts are unreadable (%s); recomputing the unit", self.file, err)
            return None
        old = stored.get("identity", {})
        if old != self.identity:
            self.stale = changed_fields(old, self.identity, self.method.name)
            log.info("recomputing %s: %s", self.name, self.stale)
            return None
        log.info("reusing finished unit %s", self.name)
        return frame, artifacts, {**stored["info"], "reused": True}

    def store(self, output: UnitOutput) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]:
        """Write a computed unit: its artifacts, then its records with identity and info (the file whose
        presence marks the unit finished), each atomically."""
        for old in self.run_dir.glob(f"artifacts/{self.name}__*.parquet"):
            old.unlink()  # a previous, now stale computation of this unit may have left other kinds
        for kind, table in output.artifacts.items():
            atomic_write(self.artifact_file(kind), lambda tmp, t=table: t.to_parquet(tmp, index=False))
        if output.identity != self.identity:  # a Ray worker ran other code than this process fingerprinted
            log.warning("unit %s: %s since this run started; it is stored under the identity it was computed "
                        "with", self.name, changed_fields(self.identity, output.identity, self.method.name))
        rec.write(output.frame, self.file, {"identity": output.identity, "artifacts": sorted(output.artifacts),
                                            "info": output.info})
        return output.frame, output.artifacts, {**output.info, "reused": False}


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
        if samples_before is not None:
            save_samples(samples_before, suite.sample_grid(model, target), run_dir / "samples" / f"{name}.png")
        if answers_before is not None:
            save_answers(answers_before, suite.example_answers(model, target), run_dir / "answers" / f"{name}.md")
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


def goal_status(task: UnlearningTask, validation: dict[str, float]) -> dict[str, float]:
    """Whether the unlearned model meets the task's goal on validation, judged by the runner for
    every method alike (a method's own claim is not trusted), with the two values judged."""
    goal = task.goal
    return {"goal_met": float(goal.met(validation, task.base_validation())),
            "val_forget": validation[goal.forget_metric], "val_retain": validation[goal.retain_metric]}


def changed_fields(old: dict, new: dict, method: str) -> str:
    """Which parts of a unit's identity differ, in words."""
    def entries(key: str) -> tuple[dict, dict, list[str]]:  # a dict-valued part: both sides, the keys that differ
        before, now = old.get(key) or {}, new.get(key) or {}
        return before, now, [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]

    def in_words(key: str) -> str:
        if key == "libraries":
            before, now, keys = entries(key)
            return f"library versions ({', '.join(f'{k} {before.get(k)} -> {now.get(k)}' for k in keys)})"
        if key == "inputs":
            return f"files read from {', '.join(entries(key)[2])} (replaced or modified)"
        return {"code_fingerprint": f"code of {method}, its suite or the harness", "model_fingerprint": "base model",
                "suite_config": "suite settings", "method_config": f"{method} settings",
                "suite_version": "suite version"}.get(key, key)

    fields = [key for key in new if old.get(key) != new[key]]
    return ", ".join(in_words(key) for key in fields) + " changed" if fields else "written by an older version"


def save_samples(before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """Before | after side by side, enlarged so small images stay readable."""
    gap = np.full((before.shape[0], max(2, before.shape[1] // 64), 3), 255, np.uint8)
    grid = np.concatenate([before, gap, after], axis=1)
    scale = max(1, 512 // grid.shape[0])
    image = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_answers(before: pd.DataFrame, after: pd.DataFrame, path: Path) -> None:
    """The same questions answered before and after unlearning, as a Markdown table."""
    from unlearnbench.reports.tables import to_markdown

    table = before.rename(columns={"answer": "before"}).assign(after=after["answer"].to_numpy())
    atomic_write_text(path, to_markdown(table.set_index(table.columns[0]), index_name=table.columns[0]))


def check_finite(model: torch.nn.Module, method: str, target: str) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise UnlearnBenchError(
            f"method {method!r} left non-finite weights in {len(bad)} tensors (first: {bad[0]}) while "
            f"unlearning {target!r}; its loss diverged — lower its learning rate or step size")


def input_fingerprints(suite: Suite) -> dict[str, str | None]:
    """Each file or folder the suite reads from its settings (real data, weights), by setting: what part
    of a result's identity says the data and weights are the same files as before."""
    return {setting: files_fingerprint(path) for setting, path in suite.input_paths().items()}


def base_evaluation(suite: Suite, target: str, model_fp: str, code_fp: str | None = None,
                    inputs: dict[str, str | None] | None = None) -> dict[str, float]:
    """Test metrics of the base model for ``target``, cached across runs under the same identity rule
    as units: suite config, model weights (``model_fp``), target, suite code (``code_fp``, the suite's
    code fingerprint), library versions and the files the suite reads (``inputs``; both computed here
    when not given)."""
    code_fp = code_fp or code_fingerprint(type(suite))
    inputs = input_fingerprints(suite) if inputs is None else inputs
    key = digest({"suite": suite.name, "version": suite.version, "config": asdict(suite.config), "model": model_fp,
                  "target": target, "code": code_fp, "libraries": library_versions(), "inputs": inputs})
    path = cache_dir() / "evals" / f"{suite.name}-{key}.json"
    values = read_cached(path, read_metric_values, "recomputing it")
    if values is not None:
        return values
    values = suite.evaluate(suite.base_model(), target)
    atomic_write_text(path, json.dumps(values))
    return values


def read_metric_values(path: Path) -> dict[str, float]:
    values = json.loads(path.read_text())
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise ValueError("expected a JSON object of metric values")
    return values


def default_run_id(suite: Suite, methods: list[Method], targets: list[str], seeds: tuple[int, ...]) -> str:
    """Same command, same run id: that is what lets a rerun resume."""
    return f"{suite.name}-" + config_hash({
        "suite": asdict(suite.config), "model": suite.model_id(), "targets": targets, "seeds": list(seeds),
        "methods": [(m.name, asdict(m.config)) for m in methods]})


def make_manifest(spec: RunSpec, suite: Suite, methods: list[Method], targets: list[str], run_id: str,
                  model_fp: str, units: dict[str, dict]) -> dict:
    packages = {}
    for dist in ("unlearnbench", "pandas"):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = None
    packages.update(library_versions())
    suite_resolved = suite.resolved_settings()
    return {
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": {"name": suite.name, "version": suite.version, "model": suite.model_id(),
                  "model_fingerprint": model_fp, "config": {**asdict(suite.config), **suite_resolved},
                  "resolved": sorted(suite_resolved)},
        "metrics": metric_metadata(suite.metrics),
        "methods": {m.name: method_entry(m, units) for m in methods},
        "targets": targets,
        "seeds": list(spec.seeds),
        "executor": spec.executor,
        "units": units,
        "git": git_revision(),
        "packages": packages,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }


def method_entry(method: Method, units: dict[str, dict]) -> dict:
    """A method's settings as its units used them: a setting left at none shows the value the task resolved
    it to (``resolved`` names those), beside the hash of the settings as given."""
    resolved = {}
    for info in units.values():
        if info["method"] == method.name:
            resolved.update(info.get("resolved", {}))
    return {"config": {**asdict(method.config), **resolved}, "config_hash": config_hash(method.config),
            "resolved": sorted(resolved)}


def git_revision(folder: Path = Path(__file__).parent) -> str | None:
    """HEAD of the clone ``folder`` is in, with ``-dirty`` when a tracked file is modified or an untracked
    file is not ignored (.gitignore ignores virtual environments: .venv/, venv/)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=folder,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")

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

import itertools
import json
import logging
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock, Timeout

from unlearnbench import records as rec
from unlearnbench.attacks.base import ATTACKS, Attack, build_attack, cost_metrics, run_attacks
from unlearnbench.benchmarks.base import Suite, build_suite
from unlearnbench.cache import (atomic_write, atomic_write_text, cache_dir, check_writable_folder, config_hash,
                                read_cached)
from unlearnbench.compute import UnitJob, UnitOutput, unit_name
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.executors import make_executor
from unlearnbench.identity import code_fingerprint, digest, files_fingerprint, library_versions, model_fingerprint
from unlearnbench.methods.base import METHODS, Method, build_method
from unlearnbench.patch import restored_weights
from unlearnbench.progress import bar as progress
from unlearnbench.records import metric_metadata

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
    command: str | None = None  # the command line that asked for the run, for the manifest and runs/index.md
    attacks: list[str] = field(default_factory=list)  # attacks run on each unit's unlearned model and on the base
    attack_overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # attack -> setting -> value (text)


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
    methods = [build_method(name, overrides) for name, overrides in method_variants(spec)]
    hashes = [(m.name, config_hash(m.config)) for m in methods]
    if len(set(hashes)) < len(hashes):
        raise UnlearnBenchError("--method-set gives one method the same settings twice; give each value once")
    for method in methods:
        if not method.supports(suite.kind):
            fits = [n for n, cls in METHODS.items() if cls.supports(suite.kind)]
            raise UnlearnBenchError(
                f"method {method.name!r} does not support suite {suite.name!r} (task kind {suite.kind!r}); "
                f"methods that do: {', '.join(fits)}")
    return suite, methods


def prepare_attacks(spec: RunSpec, suite: Suite) -> list[Attack]:
    """Build the run's attacks and check they fit the suite, before any expensive work."""
    import unlearnbench.attacks  # noqa: F401 - registers the built-in attacks

    unknown = set(spec.attack_overrides) - set(spec.attacks)
    if unknown:
        raise UnlearnBenchError(f"settings given for attacks not in the run: {sorted(unknown)}; name them in --attacks")
    attacks = [build_attack(name, spec.attack_overrides.get(name)) for name in spec.attacks]
    for attack in attacks:
        if suite.kind not in attack.kinds:
            raise UnlearnBenchError(f"attack {attack.name!r} does not support suite {suite.name!r} (task kind "
                                    f"{suite.kind!r}); attacks that do: "
                                    f"{', '.join(n for n, cls in ATTACKS.items() if suite.kind in cls.kinds)}")
        attack.check(suite)
    return attacks


def method_variants(spec: RunSpec) -> list[tuple[str, dict[str, str]]]:
    """Each method of the run with the settings of each of its variants. ``--method-set ga.lr=1e-4,1e-5``
    sweeps: one variant per value (several swept settings: every combination), in the order given; a
    setting that holds a tuple (``utility_tasks=a,b``) takes its commas as its own."""
    variants = []
    for name in spec.methods:
        overrides = spec.method_overrides.get(name, {})
        defaults = METHODS.get(name).Config() if name in METHODS else None
        axes = []
        for key, text in overrides.items():
            whole = isinstance(getattr(defaults, key, None), tuple) or "," not in text
            axes.append([(key, value) for value in ([text] if whole else [v.strip() for v in text.split(",")])])
        variants += [(name, dict(combination)) for combination in itertools.product(*axes)]
    return variants


def run(spec: RunSpec, suite: Suite | None = None) -> RunResult:
    """Run ``spec``; pass ``suite`` to reuse an already built (and loaded) suite."""
    suite, methods = prepare(spec, suite)
    attacks = prepare_attacks(spec, suite)
    attack_specs = tuple((a.name, dict(spec.attack_overrides.get(a.name, {}))) for a in attacks)
    overrides = {id(m): o for m, (_, o) in zip(methods, method_variants(spec))}  # a variant's own settings
    executor = make_executor(spec, suite)  # e.g. Ray missing: fails before any work
    targets = suite.resolve_targets(spec.targets)
    run_id = spec.run_id or default_run_id(suite, methods, targets, spec.seeds, attacks)
    run_dir = Path(spec.out_dir) / run_id
    log.info("run %s: suite %s, methods %s, targets %s, seeds %s, executor %s", run_id, suite.name,
             [m.name for m in methods], targets, list(spec.seeds), executor.name)

    check_methods(suite, methods, targets[0])  # before the run folder is touched
    if run_dir.exists():  # resumed: a folder that cannot take files fails now, not after the first unit
        check_run_folder(run_dir)
    with run_lock(run_dir), executor:
        remove_leftover_temp_files(run_dir)
        model_fp = model_fingerprint(suite.base_model())
        code_fps = {m.name: code_fingerprint(type(m), type(suite), *(type(a) for a in attacks)) for m in methods}
        suite_code_fp = code_fingerprint(type(suite))
        # Only a run with attacks has them in its units' identity, so runs without keep theirs.
        attacked = {"attacks": {a.name: asdict(a.config) for a in attacks}} if attacks else {}
        libraries, inputs = library_versions(), input_fingerprints(suite)
        # One slot per unit in (target, method, seed) order, filled as units are reused or finish
        # (in completion order on a parallel executor), so records never depend on the executor.
        slots: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]] = {}
        stale: dict[str, str] = {}
        # One bar over the run's units, whichever executor computes them; its postfix says what runs now.
        units_bar = progress(total=len(targets) * len(methods) * len(spec.seeds), desc=f"units ({executor.name})",
                             unit="unit", leave=True)

        def finished(unit: Unit, output: UnitOutput) -> None:
            slots[unit.name] = unit.store(output)  # written atomically here, by this process, as each finishes
            units_bar.update()

        for target in targets:
            units_bar.set_postfix_str(f"evaluating the base model on {target}")
            before = base_evaluation(suite, target, model_fp, suite_code_fp, inputs)
            for method in methods:
                for seed in spec.seeds:
                    unit_before = before
                    if attacks:  # the base model attacked: the reference point of the unit's attacked numbers
                        units_bar.set_postfix_str(f"attacking the base model on {target}, seed {seed}")
                        unit_before = {**before, **base_attacks(suite, target, seed, attacks, model_fp, inputs)}
                    unit = Unit(suite, method, target, seed, run_dir, {
                        "suite": suite.name, "suite_version": suite.version, "suite_config": asdict(suite.config),
                        "model_fingerprint": model_fp, "target": target, "method": method.name,
                        "method_config": asdict(method.config), "seed": seed,
                        "code_fingerprint": code_fps[method.name], "libraries": libraries, "inputs": inputs,
                        **attacked})
                    slots[unit.name] = None
                    stored = unit.reuse()
                    if unit.stale:
                        stale[unit.name] = unit.stale
                    if stored is not None:
                        slots[unit.name] = stored
                        units_bar.update()
                        continue
                    keys = dict(run_id=run_id, suite=suite.name, suite_version=suite.version, model=suite.model_id(),
                                target=target, method=method.name, config_hash=config_hash(method.config), seed=seed)
                    job = UnitJob(suite=suite.name, suite_overrides=dict(spec.suite_overrides), method=method.name,
                                  method_overrides=overrides[id(method)], target=target,
                                  seed=seed, run_dir=str(run_dir), identity=unit.identity, before=unit_before,
                                  keys=keys, modules=(type(suite).__module__, type(method).__module__,
                                                             *(type(a).__module__ for a in attacks)),
                                  attacks=attack_specs)
                    units_bar.set_postfix_str(f"{method.name} on {target}, seed {seed}")
                    executor.submit(job, suite, method, lambda output, unit=unit: finished(unit, output))
        units_bar.set_postfix_str("")
        executor.wait()
        units_bar.close()
        frames = [frame for frame, _, _ in slots.values()]
        artifacts = {f"{name}/{kind}": table for name, (_, unit_artifacts, _) in slots.items()
                     for kind, table in unit_artifacts.items()}
        units = {name: info for name, (_, _, info) in slots.items()}
        records = pd.concat(frames, ignore_index=True)
        rec.write(records, run_dir / "records.parquet")
        manifest = make_manifest(spec, suite, methods, targets, run_id, model_fp, units, attacks)
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
    """Hold ``run_dir/.lock`` for the whole run, so two processes never compute the same units (filelock:
    an OS lock on every platform, released when the process ends however it ends)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(run_dir / ".lock", timeout=0)
        lock.acquire()
    except Timeout:
        raise UnlearnBenchError(
            f"run folder {run_dir} is in use by another bench.py process; wait for it to finish, "
            "or give this run another --run-id") from None
    except OSError as err:
        raise UnlearnBenchError(f"run folder {run_dir} cannot be written ({err.strerror or err}); make it writable, "
                                "or give --out / --run-id a folder you can write in") from None
    try:
        yield
    finally:
        lock.release()


def remove_leftover_temp_files(run_dir: Path) -> None:
    """Temporary files of an interrupted atomic write (the run folder is locked, so none is live)."""
    for tmp in run_dir.rglob(".*.tmp"):
        log.info("removing %s, left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


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
                "attacks": "attacks or their settings",
                "suite_version": "suite version"}.get(key, key)

    fields = [key for key in new if old.get(key) != new[key]]
    return ", ".join(in_words(key) for key in fields) + " changed" if fields else "written by an older version"


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


def base_attacks(suite: Suite, target: str, seed: int, attacks: list[Attack], model_fp: str,
                 inputs: dict[str, str | None]) -> dict[str, float]:
    """The run's attacks on the base model for ``target`` under ``seed`` (their ``before`` rows), cached across
    runs under the identity of the base evaluation plus the attacks' settings and code."""
    code_fp = code_fingerprint(type(suite), *(type(a) for a in attacks))
    key = digest({"suite": suite.name, "version": suite.version, "config": asdict(suite.config), "model": model_fp,
                  "target": target, "seed": seed, "code": code_fp, "libraries": library_versions(), "inputs": inputs,
                  "attacks": [(a.name, asdict(a.config)) for a in attacks]})
    path = cache_dir() / "evals" / f"{suite.name}-attacks-{key}.json"
    values = read_cached(path, read_metric_values, "recomputing it")
    if values is not None:
        return values
    task = suite.task(target)
    with restored_weights(task.model):
        values = run_attacks(attacks, suite, task, (), seed)
    atomic_write_text(path, json.dumps(values))
    return values


def read_metric_values(path: Path) -> dict[str, float]:
    values = json.loads(path.read_text())
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise ValueError("expected a JSON object of metric values")
    return values


def default_run_id(suite: Suite, methods: list[Method], targets: list[str], seeds: tuple[int, ...],
                   attacks: list[Attack] | None = None) -> str:
    """Same command, same run id: that is what lets a rerun resume (a run with attacks gets its own)."""
    attacked = {"attacks": [(a.name, asdict(a.config)) for a in attacks]} if attacks else {}
    return f"{suite.name}-" + config_hash({
        "suite": asdict(suite.config), "model": suite.model_id(), "targets": targets, "seeds": list(seeds),
        "methods": [(m.name, asdict(m.config)) for m in methods], **attacked})


def make_manifest(spec: RunSpec, suite: Suite, methods: list[Method], targets: list[str], run_id: str,
                  model_fp: str, units: dict[str, dict], attacks: list[Attack] | None = None) -> dict:
    names = [m.name for m in methods]
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
        "metrics": metric_metadata((*suite.metrics, *suite.validation_metrics,
                                    *(m for a in attacks or () for m in (*a.metrics(suite), *cost_metrics(a.name))))),
        # Keyed by name, or by name-hash where a sweep runs several variants of one method.
        "methods": {(m.name if names.count(m.name) == 1 else f"{m.name}-{config_hash(m.config)}"):
                    method_entry(m, units) for m in methods},
        "targets": targets,
        "seeds": list(spec.seeds),
        "executor": spec.executor,
        "command": spec.command,
        "units": units,
        **({"attacks": {a.name: {"config": asdict(a.config), "labels": list(a.labels())} for a in attacks}}
           if attacks else {}),
        "git": git_revision(),
        "packages": packages,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }


def method_entry(method: Method, units: dict[str, dict]) -> dict:
    """A method's settings as its units used them: a setting left at none shows the value the task resolved
    it to (``resolved`` names those), beside the hash of the settings as given."""
    resolved, key = {}, config_hash(method.config)
    for info in units.values():
        if info["method"] == method.name and info.get("config_hash", key) == key:
            resolved.update(info.get("resolved", {}))
    return {"method": method.name, "config": {**asdict(method.config), **resolved}, "config_hash": key,
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

"""How a run computes the units it cannot reuse: one after another in this process (``sequential``, the
default), or as Ray tasks on a local cluster or an existing one (``ray``; the optional extra: ``pip install
-e ".[ray]"``).

Either way the driver (the ``bench.py`` process) holds the run folder's lock, decides which units are
reused, computes the base evaluations, and writes each unit's records and artifacts atomically as it
finishes (``Unit.store``), in completion order; so resume, records and reports are the same whichever
executor ran them. A Ray task (``run_job``) rebuilds the suite and method from their names and settings,
checks them against the unit's identity (settings and model fingerprint; a unit whose code changed on disk
since the driver started is stored under the code fingerprint it ran with), computes the unit with
``compute.compute_unit`` (the code path of a sequential run) and writes the patch, sample grid and example
answers atomically into the run folder itself: on a cluster of several machines (``--address``) the run
folder must be on a filesystem every node shares, and every node needs the same code, data and models.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from unlearnbench.compute import build_attacks, compute_unit
from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger(__name__)

EXECUTORS = ("sequential", "ray")
RAY_MISSING = '--executor ray needs Ray: pip install -e ".[ray]"'

Done = Callable[[Any], None]  # called in the driver with each unit's UnitOutput as it finishes


class Executor:
    """Sequential: each unit is computed in this process the moment it is submitted (today's behaviour)."""

    name = "sequential"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, job, suite, method, done: Done) -> None:
        done(compute_unit(suite, method, job))

    def wait(self) -> None:
        """Return once every submitted unit has finished (and ``done`` has run for it)."""


def make_executor(spec, suite) -> Executor:
    """The executor ``spec.executor`` names, checked before any work (Ray installed, settings it can run)."""
    if spec.executor == "sequential":
        if spec.address is not None:
            raise UnlearnBenchError("--address is the address of a Ray cluster; give it with --executor ray")
        return Executor()
    if spec.executor == "ray":
        return RayExecutor(spec, suite)
    raise UnlearnBenchError(f"unknown executor {spec.executor!r}; executors: {', '.join(EXECUTORS)}")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UnlearnBenchError(RAY_MISSING) from None
    return ray


class RayExecutor(Executor):
    """Units as Ray tasks: one CPU each on CPU suites (so a local cluster runs one unit per core), one GPU
    each where the suite's device is cuda. Without ``--address`` a local cluster is started on this
    machine's CPUs and stopped at the end; if this process is already connected to Ray, that is used."""

    name = "ray"

    def __init__(self, spec, suite) -> None:
        from unlearnbench.benchmarks.base import SUITES
        from unlearnbench.config import apply_overrides

        self.ray = import_ray()
        self.address = spec.address
        cls = SUITES.get(spec.suite)
        if type(suite) is not cls or apply_overrides(cls.Config(), spec.suite_overrides, "suite") != suite.config:
            raise UnlearnBenchError(
                "--executor ray rebuilds the suite in each worker from its name and --set settings, but the suite "
                f"given to run() is not what {spec.suite!r} with {spec.suite_overrides} builds")
        device = str(getattr(suite.config, "device", "cpu"))
        self.gpu = device.startswith("cuda")
        if self.gpu and device not in ("cuda", "cuda:0"):
            raise UnlearnBenchError(f"--executor ray: device={device!r}; Ray gives each unit its own GPU, which the "
                                    "unit sees as cuda: use --set device=cuda")
        self.started = False
        self.pending: dict[Any, Done] = {}
        self.cpus = 1
        self.remote = None

    def start(self) -> None:
        """Connect to (or start) the cluster: on the first unit to compute, so a fully reused run starts none."""
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                       "log_to_driver": True}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(address="local", num_cpus=os.cpu_count(), **options)
            self.started = True
        resources = ray.cluster_resources()
        if self.gpu:
            gpus = int(resources.get("GPU", 0))
            if gpus < 1:
                self.__exit__(None, None, None)
                raise UnlearnBenchError("--executor ray: the suite runs on cuda, but the Ray cluster has no GPU")
            self.cpus = max(1, int(resources.get("CPU", 1)) // gpus)  # each unit also gets its share of CPUs
        log.info("Ray cluster: %s; each unit asks %d CPU(s)%s", resources, self.cpus, " and 1 GPU" if self.gpu else "")
        from unlearnbench.cache import CACHE_ENV, cache_root

        # Workers read the same cache as this process (trained embedded models, generated data); their
        # progress bars stay off (the runner's bar here counts finished units), their warnings reach this terminal.
        self.env = {CACHE_ENV: str(cache_root().resolve()), "TQDM_DISABLE": "1"}
        from unlearnbench.plugins import PATHS

        if PATHS:  # plugins given as files or found in the current folder import in the workers too
            self.env["PYTHONPATH"] = os.pathsep.join([*PATHS, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.remote = ray.remote(run_job)

    def submit(self, job, suite, method, done: Done) -> None:
        if self.remote is None:
            self.start()
        ref = self.remote.options(num_cpus=self.cpus, num_gpus=1 if self.gpu else 0,
                                  runtime_env={"env_vars": self.env}).remote(job, self.cpus)
        self.pending[ref] = done

    def wait(self) -> None:
        """Store each unit as it finishes (``done``; the runner's bar over units counts it)."""
        ray = self.ray
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            done = self.pending.pop(ready[0])
            try:
                output = ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, UnlearnBenchError):  # one line, as a sequential run prints it
                    raise UnlearnBenchError(str(err.cause)) from None
                raise
            done(output)

    def __exit__(self, *exc: object) -> None:
        ray = self.ray
        for ref in self.pending:  # the run failed or was interrupted: nothing more is computed
            ray.cancel(ref, force=True)
        self.pending.clear()
        if self.started:
            ray.shutdown()
            self.started = False
        self.remote = None


_SUITES: dict[str, Any] = {}  # per worker process: suites built (and models loaded) once, with their checks


def run_job(job, threads: int):
    """A Ray task: compute one unit in a worker process and return its UnitOutput to the driver."""
    import torch

    from unlearnbench.identity import code_fingerprint, library_versions
    from unlearnbench.methods.base import build_method

    torch.set_num_threads(threads)
    for module in ("unlearnbench.benchmarks", "unlearnbench.methods", *job.modules):
        importlib.import_module(module)  # registers the suites and methods, plugins included
    if not Path(job.run_dir).is_dir():
        raise UnlearnBenchError(f"run folder {job.run_dir} is not visible on Ray node {platform.node()}; with "
                                "--address the run folder (--out) must be on a filesystem every node shares")
    suite = worker_suite(job)
    method = build_method(job.method, job.method_overrides)
    check_same(f"{job.method} settings", asdict(method.config), job.identity["method_config"])
    attacks = build_attacks(job.attacks)  # the identity's code includes theirs where the run has any
    code, libraries = code_fingerprint(type(method), type(suite), *(type(a) for a in attacks)), library_versions()
    if code != job.identity["code_fingerprint"] or libraries != job.identity["libraries"]:
        # The code changed on disk after bench.py started (or code or libraries differ on this node): the unit
        # is stored under what it ran through, so a rerun recomputes it if that is not current.
        job = replace(job, identity={**job.identity, "code_fingerprint": code, "libraries": libraries})
    return compute_unit(suite, method, job)


def worker_suite(job):
    from unlearnbench.benchmarks.base import build_suite
    from unlearnbench.identity import model_fingerprint

    key = json.dumps([job.suite, job.suite_overrides], sort_keys=True)
    if key not in _SUITES:
        suite = build_suite(job.suite, job.suite_overrides)
        check_same("suite settings", asdict(suite.config), job.identity["suite_config"])
        check_same("base model", model_fingerprint(suite.base_model()), job.identity["model_fingerprint"])
        _SUITES[key] = suite
    return _SUITES[key]


def check_same(what: str, here: object, driver: object) -> None:
    """A worker computes a unit only with the suite, method, model and code the driver's identity names."""
    if json.loads(json.dumps(here, default=str)) != driver:
        raise UnlearnBenchError(f"Ray worker on {platform.node()}: its {what} differ from the driver's; every node "
                                "needs the same unlearnbench code, data and models as the machine running bench.py")

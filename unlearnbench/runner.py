"""The experiment loop: for each (target, method, seed): evaluate before -> unlearn -> evaluate after.

Every finished unit is written atomically under ``runs/<run-id>/units/`` before the next starts, so
an interrupted or failing run keeps what it finished and a rerun of the same command resumes
instead of redoing it. Base-model evaluations are cached across runs by (suite version, model,
target). The model is restored to its base weights after every unit, whatever happens.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import subprocess
import time
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
from unlearnbench.cache import atomic_write, atomic_write_text, cache_dir, config_hash
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import METHODS, Method, build_method
from unlearnbench.patch import Patch, patch_metadata, restored_weights, stored_payload_bytes

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


@dataclass
class RunResult:
    run_dir: Path
    records: pd.DataFrame
    manifest: dict
    artifacts: dict[str, pd.DataFrame]  # "<unit>/<name>" -> table (traces, SLUG layer statistics)


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
    suite, methods = prepare(spec, suite)
    targets = suite.resolve_targets(spec.targets)
    run_id = spec.run_id or default_run_id(suite, methods, targets, spec.seeds)
    run_dir = Path(spec.out_dir) / run_id
    log.info("run %s: suite %s, methods %s, targets %s, seeds %s", run_id, suite.name,
             [m.name for m in methods], targets, list(spec.seeds))

    frames, artifacts = [], {}
    for target in targets:
        before = base_evaluation(suite, target)
        for method in methods:
            for seed in spec.seeds:
                keys = dict(run_id=run_id, suite=suite.name, suite_version=suite.version, model=suite.model_id(),
                            target=target, method=method.name, config_hash=config_hash(method.config), seed=seed)
                frame, unit_artifacts = run_unit(suite, method, target, seed, before, keys, run_dir)
                frames.append(frame)
                artifacts.update(unit_artifacts)
    records = pd.concat(frames, ignore_index=True)
    rec.write(records, run_dir / "records.parquet")
    manifest = make_manifest(spec, suite, methods, targets, run_id)
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return RunResult(run_dir, records, manifest, artifacts)


def unit_name(target: str, method: Method, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)
    return f"{safe}__{method.name}-{config_hash(method.config)}__seed{seed}"


def run_unit(suite: Suite, method: Method, target: str, seed: int, before: dict[str, float],
             keys: dict, run_dir: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One (target, method, seed): reuse its records if a previous run finished it."""
    name = unit_name(target, method, seed)
    unit_file = run_dir / "units" / f"{name}.parquet"
    artifact_dir = run_dir / "artifacts"
    if unit_file.is_file():
        log.info("reusing finished unit %s", name)
        artifacts = {f"{name}/{p.stem.split('__')[-1]}": pd.read_parquet(p)
                     for p in sorted(artifact_dir.glob(f"{name}__*.parquet"))}
        return rec.read(unit_file), artifacts

    task = suite.task(target)
    model = task.model
    samples_before = suite.sample_grid(model, target)
    answers_before = suite.example_answers(model, target)
    with restored_weights(model) as base_state:
        torch.manual_seed(seed)
        with task.costs.track_memory(task.device):
            outcome = method.unlearn(task)
        check_finite(model, method.name, target)
        patch = Patch.diff(base_state, model, patch_metadata(
            method=method.name, target=target, seed=seed, config=asdict(method.config), **outcome.info))
        patch_file = run_dir / "patches" / f"{name}.safetensors"
        patch.save(patch_file)
        start = time.perf_counter()
        after = suite.evaluate(model, target)
        eval_seconds = time.perf_counter() - start
        if samples_before is not None:
            save_samples(samples_before, suite.sample_grid(model, target), run_dir / "samples" / f"{name}.png")
        if answers_before is not None:
            save_answers(answers_before, suite.example_answers(model, target), run_dir / "answers" / f"{name}.md")

    costs = task.costs.as_metrics()
    costs.update(storage_bytes=float(stored_payload_bytes(patch_file)), changed_tensors=float(len(patch.tensors)),
                 eval_seconds=eval_seconds)
    frame = pd.concat([rec.make_records(before, stage="before", **keys),
                       rec.make_records({**after, **costs}, stage="after", **keys)], ignore_index=True)
    artifacts = {"trace": outcome.trace, **outcome.tables}
    artifacts = {k: v for k, v in artifacts.items() if len(v)}
    for kind, table in artifacts.items():
        atomic_write(artifact_dir / f"{name}__{kind}.parquet", lambda tmp, t=table: t.to_parquet(tmp, index=False))
    rec.write(frame, unit_file)
    return frame, {f"{name}/{k}": v for k, v in artifacts.items()}


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


def base_evaluation(suite: Suite, target: str) -> dict[str, float]:
    """Test metrics of the base model for ``target``, cached across runs."""
    key = config_hash({"suite": suite.name, "version": suite.version, "model": suite.model_id(),
                       "target": target, "config": asdict(suite.config)})
    path = cache_dir() / "evals" / f"{suite.name}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    values = suite.evaluate(suite.base_model(), target)
    atomic_write_text(path, json.dumps(values))
    return values


def default_run_id(suite: Suite, methods: list[Method], targets: list[str], seeds: tuple[int, ...]) -> str:
    """Same command, same run id: that is what lets a rerun resume."""
    return f"{suite.name}-" + config_hash({
        "suite": asdict(suite.config), "model": suite.model_id(), "targets": targets, "seeds": list(seeds),
        "methods": [(m.name, asdict(m.config)) for m in methods]})


def make_manifest(spec: RunSpec, suite: Suite, methods: list[Method], targets: list[str], run_id: str) -> dict:
    packages = {}
    for dist in ("unlearnbench", "torch", "open_clip_torch", "diffusers", "transformers", "numpy", "pandas"):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = None
    return {
        "run_id": run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": {"name": suite.name, "version": suite.version, "model": suite.model_id(),
                  "config": asdict(suite.config)},
        "methods": {m.name: {"config": asdict(m.config), "config_hash": config_hash(m.config)} for m in methods},
        "targets": targets,
        "seeds": list(spec.seeds),
        "git": git_revision(),
        "packages": packages,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")

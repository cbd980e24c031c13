"""What an unlearning run costs: wall time per phase, peak memory, sample passes, patch bytes.

docs/PROTOCOLS.md ("Costs"): runtime split into precompute / update / search, peak memory of the
unlearning step, forward and backward sample passes (the paper's complexity column, measured), and
storage measured from the written patch file. ``OtherLoad`` measures how much CPU other processes took
while a unit was timed, so a timing taken beside other work is marked as such.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch

from unlearnbench.passes import counted_as

PHASES = ("precompute", "update", "search")


class _PeakRSS:
    """Samples the process RSS in a background thread; CPU has no max_memory_allocated."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.start_bytes = self._process.memory_info().rss
        self.peak_bytes = self.start_bytes
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)


class OtherLoad:
    """The share of this process's CPUs that other processes used while the block ran, in % (``percent``).

    Wall times taken beside other work read high (two torch processes with 2 threads each on 2 cores
    ran about 7x slower than one alone), so each unit records this with its timings and reports mark
    the timings it makes doubtful (``reports.tables.LOADED_PERCENT``). Busy time of the CPUs this process
    may run on (``/proc/stat`` through psutil; steal time counts, a hypervisor took it) less this
    process's own CPU time (and, with ``children``, that of the child processes it waited for), over the
    wall time of all those CPUs.
    """

    def __init__(self, children: bool = False) -> None:
        self._process = psutil.Process()
        self._children = children  # count the CPU time of this process's finished children as its own
        try:
            self._cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # no affinity API (macOS, Windows): every CPU
            self._cpus = list(range(psutil.cpu_count() or 1))
        self.percent = 0.0

    def _busy_seconds(self) -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        total = 0.0
        for cpu in self._cpus:
            if cpu < len(per_cpu):
                t = per_cpu[cpu]
                # guest time is already inside user time on Linux; idle and waiting for I/O are not busy
                total += sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
                    - getattr(t, "guest_nice", 0.0)
        return total

    def _own_seconds(self) -> float:
        own = self._process.cpu_times()
        return own.user + own.system + (own.children_user + own.children_system if self._children else 0.0)

    def __enter__(self) -> OtherLoad:
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start[0]
        others = (self._busy_seconds() - self._start[1]) - (self._own_seconds() - self._start[2])
        self.percent = min(100.0, max(0.0, 100 * others / max(wall * len(self._cpus), 1e-9)))


class CostMeter:
    """Counts what a method spends. Methods open phases and report their sample passes:

    >>> costs = CostMeter()
    >>> with costs.phase("precompute"):
    ...     costs.count(forward=32, backward=32)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.forward_samples = 0
        self.backward_samples = 0
        self.evaluations = 0
        self.peak_memory_bytes = 0
        self.base_validation_s: float | None = None  # wall time of the untouched model's validation
        # The least a method could cost, measured as it ran (SLUG: its gradient passes plus one
        # validation); None where the method states none.
        self.floor_s: float | None = None
        self._current: str | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown cost phase {name!r}; expected one of {PHASES}")
        if self._current is not None:
            raise RuntimeError(f"phase {name!r} opened inside phase {self._current!r}")
        self._current = name
        start = time.perf_counter()
        try:
            if name == "precompute":  # its sample passes apart too: with the base validation, SLUG's floor
                with counted_as("precompute"):
                    yield
            else:
                yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self._current = None

    def count(self, forward: int = 0, backward: int = 0, evaluations: int = 0) -> None:
        self.forward_samples += forward
        self.backward_samples += backward
        self.evaluations += evaluations

    @contextmanager
    def track_memory(self, device: torch.device) -> Iterator[None]:
        """Peak memory growth over the block: CUDA max allocated, else sampled RSS growth."""
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            yield
            self.peak_memory_bytes = torch.cuda.max_memory_allocated(device) - base
        else:
            with _PeakRSS() as rss:
                yield
            self.peak_memory_bytes = rss.peak_bytes - rss.start_bytes

    @property
    def runtime_s(self) -> float:
        return sum(self.seconds[p] for p in PHASES)

    def as_metrics(self) -> dict[str, float]:
        """Cost metrics under the names the records and tables use."""
        metrics = {"runtime_s": self.runtime_s}
        metrics.update({f"runtime_{p}_s": self.seconds[p] for p in PHASES})
        metrics.update({
            "peak_memory_bytes": float(self.peak_memory_bytes),
            "forward_samples": float(self.forward_samples),
            "backward_samples": float(self.backward_samples),
            "evaluations": float(self.evaluations),
        })
        if self.floor_s is not None:
            metrics.update(floor_s=self.floor_s, runtime_over_floor=self.runtime_s / max(self.floor_s, 1e-9))
        return metrics

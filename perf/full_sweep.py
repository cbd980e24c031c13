"""The whole embedded benchmark on this machine: every registered method of every suite on the suite's
default target, one seed, with the wall time of each suite and of all of it, and the share of the CPUs
that other processes took meanwhile (a sweep timed beside other work reads high).

`esd` is left out: it is `esd-x` under the family's name (the same settings and work).

    python perf/full_sweep.py [OUT]        # default runs/full-sweep
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from unlearnbench.benchmarks.base import SUITES
from unlearnbench.costs import OtherLoad
from unlearnbench.methods.base import METHODS

ROOT = Path(__file__).resolve().parents[1]


def suite_methods(suite: str) -> list[str]:
    kind = SUITES.get(suite).kind
    return [name for name, cls in METHODS.items() if cls.supports(kind) and name != "esd"]


def main(out: str = "runs/full-sweep") -> None:
    total = 0.0
    with OtherLoad(children=True) as load:
        for suite in ("clip", "llava", "unlearncanvas"):
            methods = ",".join(suite_methods(suite))
            start = time.perf_counter()
            subprocess.run([sys.executable, "bench.py", "--suite", suite, "--methods", methods, "--out", out],
                           cwd=ROOT, check=True)
            seconds = time.perf_counter() - start
            total += seconds
            print(f"{suite} ({methods}): {seconds:.0f} s", flush=True)
    print(f"full embedded sweep: {total:.0f} s; other processes used {load.percent:.0f}% of the CPUs meanwhile")


if __name__ == "__main__":
    main(*sys.argv[1:2])

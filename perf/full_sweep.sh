#!/usr/bin/env bash
# The whole embedded benchmark on this machine: every registered method of every suite on the suite's
# default target, one seed, and the wall time of all of it. `esd` is left out: it is `esd-x` under the
# family's name (the same settings and work). Usage: bash perf/full_sweep.sh [OUT]  (default runs/full-sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/full-sweep}"
start=$SECONDS
for suite in clip llava unlearncanvas; do
    methods=$(python - "$suite" <<'PY'
import sys
from unlearnbench.benchmarks.base import SUITES
from unlearnbench.methods.base import METHODS
kind = SUITES.get(sys.argv[1]).kind
print(",".join(name for name, cls in METHODS.items() if cls.supports(kind) and name != "esd"))
PY
)
    suite_start=$SECONDS
    python bench.py --suite "$suite" --methods "$methods" --out "$out"
    echo "$suite ($methods): $((SECONDS - suite_start)) s"
done
echo "full embedded sweep: $((SECONDS - start)) s"

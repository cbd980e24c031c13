#!/usr/bin/env bash
# Regression-test the worked plugin: a baseline run, a new run of the same command, then `compare`
# fails (exit 1) if any metric of `mine` or `slug` moved the wrong way beyond tolerance. Run from the
# repository root; OUT (default: a temporary folder) keeps the two runs.
set -euo pipefail
OUT=${OUT:-$(mktemp -d)}
micro=(--set embedded=micro --set retain_samples=128 --plugin examples/my_method.py --methods mine,slug --out "$OUT")
python bench.py "${micro[@]}" --run-id example-base
python bench.py "${micro[@]}" --run-id example-new
python bench.py compare "$OUT/example-base" "$OUT/example-new" --fail-on-regression
python -m pytest -q examples/

#!/bin/bash
# The default recipe with --logvar-init data on the known-factor sets at 20,000 iterations (features_grid.sh's sets,
# which it makes): benchmarks/features_long.sh CORE SET...; results docs/results/features/grid-20k/SET-defaultlv.json
set -u
CORE=${1:?usage: features_long.sh CORE SET...}
shift
cd "${VSC_ROOT:-$(dirname "$0")/..}"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
OUT=docs/results/features/grid-20k
mkdir -p "$OUT"
for SET in "$@"; do
  DATA=runs/features/sets/$SET.npz RUN=runs/features/20k-$SET-defaultlv RESULT=$OUT/$SET-defaultlv.json
  [ -f "$RESULT" ] && continue
  [ -f "$DATA" ] || { echo "== $SET: make it with features_grid.sh first"; continue; }
  echo "== $SET $(date -u +%FT%TZ)"; START=$(date +%s)
  taskset -c "$CORE" vsc train --data "$DATA" --normalise 01 --dim 200 --iterations 20000 --alpha 0.05 \
    --logvar-init data --out "$RUN" --force --quiet > /dev/null || exit 1
  taskset -c "$CORE" vsc sparsity "$RUN" --truth "$DATA" --json --quiet > "$RESULT.part" || exit 1
  python - "$RESULT.part" "$(( $(date +%s) - START ))" <<'PY' && mv "$RESULT.part" "$RESULT"
import json, sys
r = json.load(open(sys.argv[1])); r.pop("dimension_rates", None)
r.update(settings="--model vsc --alpha 0.05 --logvar-init data", iterations=20000, wall_seconds=int(sys.argv[2]))
json.dump(r, open(sys.argv[1], "w"), indent=2)
PY
done

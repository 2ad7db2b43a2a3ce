#!/bin/bash
# Is an element a feature, on MNIST and Fashion-MNIST: sparse probes (k = 1, 2, 5 elements per class), the linear
# classifier on 5,000 labels, consistency and the codes' metrics, 200 dims, 20,000 iterations, one thread:
#   benchmarks/features_real.sh CORE DATA-FAMILY...        e.g. benchmarks/features_real.sh 1 mnist-default mnist-topk
# DATA: mnist, fmnist. FAMILY: vae; paper (VSC, the paper's recipe, alpha 0.01); thresholded; default (VSC, the
# default recipe, alpha 0.01); default2 (the same with --recipe default-2); default2-lv (default-2 with the decoder's
# log-variance started at the data's); topk (k = default2-lv's mean active count, rounded: matched L0; run
# DATA-default2-lv first).
# Each result: docs/results/features/real/DATA-FAMILY.json = {"sparse_probe", "classify", "sparsity", settings,
# wall time}. Runs and codes live in runs/features/.
set -u
CORE=${1:?usage: features_real.sh CORE DATA-FAMILY...}
shift
cd "${VSC_ROOT:-$(dirname "$0")/..}"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
DATA_DIR=${VSC_DATA_DIR:-../shared/data}
ITER=${ITER:-20000}
OUT=docs/results/features/real
WORK=runs/features
mkdir -p "$OUT" "$WORK"
for NAME in "$@"; do
  DATA=${NAME%%-*}; FAM=${NAME#*-}
  RESULT=$OUT/$NAME.json
  [ -f "$RESULT" ] && { echo "== $NAME done"; continue; }
  case $FAM in
    vae) S="--model vae" ;;
    paper) S="--model vsc --alpha 0.01 --paper" ;;
    thresholded) S="--model thresholded" ;;
    default) S="--model vsc --alpha 0.01" ;;
    default2) S="--model vsc --alpha 0.01 --recipe default-2" ;;
    default2-lv) S="--model vsc --alpha 0.01 --recipe default-2 --logvar-init data" ;;
    topk)
      [ -f "$OUT/$DATA-default2-lv.json" ] || { echo "== $NAME: run $DATA-default2-lv first (top-k's k is its L0)"; continue; }
      K=$(python -c "import json,sys; print(max(1, round(json.load(open(sys.argv[1]))['sparsity']['active_mean'])))" "$OUT/$DATA-default2-lv.json")
      S="--model topk --k $K" ;;
    *) echo "unknown family $FAM" >&2; exit 2 ;;
  esac
  echo "== $NAME ($S) $(date -u +%FT%TZ)"
  START=$(date +%s)
  RUN=$WORK/$NAME
  taskset -c "$CORE" vsc train --data "$DATA" --dim 200 --iterations "$ITER" $S --out "$RUN" --force --data-dir "$DATA_DIR" \
    --quiet > /dev/null || exit 1
  taskset -c "$CORE" vsc encode "$RUN" -o "$RUN.h5" --force --data-dir "$DATA_DIR" --quiet > /dev/null || exit 1
  taskset -c "$CORE" vsc classify "$RUN.h5" --sparse-probe 1,2,5 --json --quiet > "$RUN.probe.json" || exit 1
  taskset -c "$CORE" vsc classify "$RUN.h5" --json --quiet > "$RUN.classify.json" || exit 1
  taskset -c "$CORE" vsc sparsity "$RUN" --consistency --data-dir "$DATA_DIR" --json --quiet > "$RUN.sparsity.json" || exit 1
  python - "$RUN" "$S" "$ITER" "$(( $(date +%s) - START ))" "$RESULT" <<'PY'
import json, sys
run, settings, iterations, seconds, out = sys.argv[1:]
s = json.load(open(f"{run}.sparsity.json"))
s.pop("dimension_rates", None)
m = json.load(open(f"{run}/metrics.json"))
r = {"sparse_probe": json.load(open(f"{run}.probe.json")), "classify": json.load(open(f"{run}.classify.json")),
     "sparsity": s, "test_elbo": m["test_elbo"], "settings": settings, "iterations": int(iterations),
     "wall_seconds": int(seconds)}
json.dump(r, open(out + ".part", "w"), indent=2)
PY
  mv "$RESULT.part" "$RESULT"
done
echo "== done $(date -u +%FT%TZ)"

#!/bin/bash
# Is an element a feature? Every family on the sets with known factors, 200 dims, 5,000 iterations, one thread:
#   benchmarks/features_grid.sh CORE SET-FAMILY...        e.g. benchmarks/features_grid.sh 1 n100-default n100-topk
# SET: s100 / n100 (sparse-linear, K = 100 atoms, 5 on per image, signed / non-negative values), n50, n200, s50, s200
# (K = 50 or 200), m (the union of manifolds: 10 classes x 3 factors); 20,000 images each (2,000 test), vsc synth's
# defaults otherwise. FAMILY: vae, paper (VSC, the paper's recipe, alpha 0.05), default (VSC, the default recipe,
# alpha 0.05), defaultlv (the same with --logvar-init data), thresholded, topk (k = defaultlv's mean active count on
# that set, rounded: matched L0; so run SET-defaultlv first), vaelv / paperlv / thresholdedlv / topklv (the family with
# --logvar-init data), dl (scikit-learn's dictionary learning + OMP with the set's true count of non-zeros, 200 atoms:
# benchmarks/dictionary_anchor.py, outside vsc). Each result: docs/results/features/grid/SET-FAMILY.json (vsc
# sparsity RUN --truth SET --json, with the settings and wall time); SET-FAMILY-sN: the same with --seed N. Runs and
# sets live in runs/features/. ITER (iterations, 5000), OUT (results folder) and WORK (runs folder) may be set:
# `ITER=20000 OUT=docs/results/features/grid-20k WORK=runs/features-20k benchmarks/features_grid.sh 0 n100-defaultlv`.
set -u
CORE=${1:?usage: features_grid.sh CORE SET-FAMILY...}
shift
cd "${VSC_ROOT:-$(dirname "$0")/..}"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
ITER=${ITER:-5000}
OUT=${OUT:-docs/results/features/grid}  # e.g. ITER=20000 OUT=docs/results/features/grid-20k WORK=runs/features-20k
WORK=${WORK:-runs/features}
SETS=runs/features/sets  # shared by every ITER
mkdir -p "$OUT" "$WORK" "$SETS"
make_set() {  # SET -> its .npz path (made once)
  local f="$SETS/$1.npz" args
  case $1 in
    s100) args="sparse-linear --values signed" ;;
    n100) args="sparse-linear --values nonnegative" ;;
    s50) args="sparse-linear --values signed --factors 50" ;;
    n50) args="sparse-linear --values nonnegative --factors 50" ;;
    s200) args="sparse-linear --values signed --factors 200" ;;
    n200) args="sparse-linear --values nonnegative --factors 200" ;;
    m) args="manifolds" ;;
    *) echo "unknown set $1" >&2; return 1 ;;
  esac
  [ -f "$f" ] || vsc synth $args -o "$f" > /dev/null || return 1
  echo "$f"
}
true_k() { case $1 in m) echo 3 ;; *) echo 5 ;; esac; }
for NAME in "$@"; do
  SET=${NAME%%-*}; FAM=${NAME#*-}; SEED=""
  case $FAM in *-s[0-9]*) SEED="--seed ${FAM##*-s}"; FAM=${FAM%-s*} ;; esac  # SET-FAMILY-sN: seed N
  RESULT=$OUT/$NAME.json
  [ -f "$RESULT" ] && { echo "== $NAME done"; continue; }
  DATA=$(make_set "$SET") || exit 2
  LV=""
  case $FAM in defaultlv) ;; *lv) LV="--logvar-init data"; FAM=${FAM%lv} ;; esac  # FAMILYlv: --logvar-init data
  case $FAM in
    vae) S="--model vae" ;;
    paper) S="--model vsc --alpha 0.05 --paper" ;;
    default) S="--model vsc --alpha 0.05" ;;
    defaultlv) S="--model vsc --alpha 0.05 --logvar-init data" ;;
    thresholded) S="--model thresholded" ;;
    topk)
      [ -f "$OUT/$SET-defaultlv.json" ] || { echo "== $NAME: run $SET-defaultlv first (top-k's k is its L0)"; continue; }
      K=$(python -c "import json,sys; print(max(1, round(json.load(open(sys.argv[1]))['active_mean'])))" "$OUT/$SET-defaultlv.json")
      S="--model topk --k $K" ;;
    dl) S="" ;;
    *) echo "unknown family $FAM" >&2; exit 2 ;;
  esac
  echo "== $NAME ($S) $(date -u +%FT%TZ)"
  START=$(date +%s)
  if [ "$FAM" = dl ]; then
    taskset -c "$CORE" python benchmarks/dictionary_anchor.py "$DATA" --nonzero "$(true_k "$SET")" --json "$RESULT.part" \
      > /dev/null || exit 1
  else
    RUN=$WORK/$NAME
    taskset -c "$CORE" vsc train --data "$DATA" --normalise 01 --dim 200 --iterations "$ITER" $S $LV $SEED --out "$RUN" --force \
      --quiet > /dev/null || exit 1
    taskset -c "$CORE" vsc sparsity "$RUN" --truth "$DATA" --json --quiet > "$RESULT.part" || exit 1
  fi
  python - "$RESULT.part" "$S $LV $SEED" "$ITER" "$(( $(date +%s) - START ))" <<'PY' && mv "$RESULT.part" "$RESULT"
import json, sys
path, settings, iterations, seconds = sys.argv[1:]
r = json.load(open(path))
r.pop("dimension_rates", None)
r.update(settings=settings.strip() or "dictionary learning + OMP", iterations=int(iterations), wall_seconds=int(seconds))
json.dump(r, open(path, "w"), indent=2)
PY
done
echo "== done $(date -u +%FT%TZ)"

#!/bin/bash
# The CelebA probes of default-2's study: the 10,000-image subset, 800 dimensions, alpha 0.01, one variant per run folder
# runs/celeba-VARIANT; each finished run's reconstruction and specificity numbers go to
# docs/results/celeba/VARIANT.json (benchmarks/reconstruction.py), its log.csv to docs/results/celeba/curves/. Resumable: a half-trained run resumes.
#   nohup setsid benchmarks/celeba.sh 0 3000 warm-centre > logs/celeba.log 2>&1 &
set -u
CORE=${1:?usage: celeba.sh CORE ITERATIONS VARIANT...}
ITER=${2:?usage: celeba.sh CORE ITERATIONS VARIANT...}
shift 2
cd "${VSC_ROOT:-$(dirname "$0")/..}"  # VSC_ROOT: the checkout, when a copy of this script runs from elsewhere
export OMP_NUM_THREADS=1
DATA_DIR=${VSC_DATA_DIR:-../shared/data}
# Every variant is on top of `vsc train`'s default recipe: default-2 (the rate term, weight 3, target 0.05, and
# centred input), CelebA's lr 1e-4; the results named lr1e-3-* were made before, on default-1 at lr 1e-3.
PLAIN="--spike sigmoid --pretrain 0 --pretrain-ramp 0 --alpha-hold 0 --alpha-anneal 0"  # no phases, alpha fixed
NEW="--centre --rate-weight 3 --rate-target 0.05"  # default-2's candidate (rate 3, target 0.05, centred)
settings() {
  case $1 in
    default) echo "" ;;
    centre) echo "--centre" ;;
    warm-centre) echo "--centre --kl-warmup $((ITER / 2))" ;;
    warm-centre-rate) echo "--centre --rate-weight 1 --kl-warmup $((ITER / 2))" ;;
    plain-warm-centre) echo "$PLAIN --centre --kl-warmup $((ITER / 2))" ;;
    plain-warm-centre-rate) echo "$PLAIN --centre --rate-weight 1 --kl-warmup $((ITER / 2))" ;;
    plain-centre) echo "$PLAIN --centre" ;;
    centre-scale) echo "--centre --encoder-scale data" ;;
    plain-centre-scale) echo "$PLAIN --centre --encoder-scale data" ;;
    plain-centre-scale-rate) echo "$PLAIN --centre --encoder-scale data --rate-weight 1" ;;
    plain-warm-centre-scale) echo "$PLAIN --centre --encoder-scale data --kl-warmup $((ITER / 2))" ;;
    scale) echo "--encoder-scale data" ;;  # the default recipe (default-2) with scaled input
    plain-centre-scale-rate30) echo "$PLAIN --centre --encoder-scale data --rate-weight 30 --rate-target 0.05" ;;
    new) echo "$NEW" ;;
    new-floor7) echo "$NEW --min-logvar -7" ;;
    new-floor8) echo "$NEW --min-logvar -8" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
mkdir -p docs/results/celeba/curves
for V in "$@"; do
  S=$(settings "$V") || exit 2
  NAME=$V-i$ITER
  RUN=runs/celeba-$NAME
  OUT=docs/results/celeba/$NAME.json
  [ -f "$OUT" ] && { echo "== $NAME done"; continue; }
  echo "== $NAME ($S) $(date -u +%FT%TZ)"
  if [ -f "$RUN/checkpoint.safetensors" ]; then
    nice -n 5 taskset -c "$CORE" vsc train --resume "$RUN" --data-dir "$DATA_DIR" --quiet || exit 1
  else
    nice -n 5 taskset -c "$CORE" vsc train --data celeba --dim 800 --alpha 0.01 --iterations "$ITER" \
      --batch-size 128 --logvar-init data $S --out "$RUN" --force --data-dir "$DATA_DIR" --quiet || exit 1
  fi
  nice -n 5 taskset -c "$CORE" python benchmarks/reconstruction.py "$RUN" --data-dir "$DATA_DIR" > "$OUT.part" \
    && python - "$OUT.part" "$RUN" "$S" <<'PY' && mv "$OUT.part" "$OUT"
import json, sys
path, run, settings = sys.argv[1:]
r = json.load(open(path))
m = json.load(open(f"{run}/metrics.json"))
r.update(settings=settings, test_elbo=m["test_elbo"], test_sparsity=m["test_sparsity"], seconds=m["seconds"],
         iterations=m["iterations"])
json.dump(r, open(path, "w"), indent=2)
PY
  cp "$RUN/log.csv" "docs/results/celeba/curves/$NAME.csv"  # the training curve, committed beside the numbers
done
echo "== done $(date -u +%FT%TZ)"

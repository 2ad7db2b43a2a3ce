#!/bin/bash
# CelebA 64x64 with the conv network (the 10,000-image subset, 9,000 / 1,000 split), alpha 0.01, batch 64: one
# family or setting per run folder runs/celeba64-VARIANT-dDIM-iITER; each finished run's reconstruction error against
# the mean face's, active elements per face and Jaccard between faces go to docs/results/celeba-conv/NAME.json
# (benchmarks/reconstruction.py, with the run's test ELBO and times), its log.csv to docs/results/celeba-conv/curves/.
# Resumable: a half-trained run resumes (checkpoints every 500 iterations).
#   nohup setsid benchmarks/celeba_conv.sh 1 10000 256 vsc vae > logs/celeba-conv.log 2>&1 &
set -u
CORE=${1:?usage: celeba_conv.sh CORE ITERATIONS DIM VARIANT...}
ITER=${2:?usage: celeba_conv.sh CORE ITERATIONS DIM VARIANT...}
DIM=${3:?usage: celeba_conv.sh CORE ITERATIONS DIM VARIANT...}
shift 3
cd "${VSC_ROOT:-$(dirname "$0")/..}"
export OMP_NUM_THREADS=1
DATA_DIR=${VSC_DATA_DIR:-../shared/data}
LR=${LR:-1e-3}
settings() {
  case $1 in
    vsc) echo "--model vsc" ;;  # the default recipe (default-2), which picks the conv network at 64x64 for CelebA
    vae) echo "--model vae" ;;
    thresholded) echo "--model thresholded" ;;
    vsc-rate30) echo "--model vsc --encoder-scale data --rate-weight 30" ;;  # the best MLP run's rate term
    vsc-target0.1) echo "--model vsc --rate-target 0.1" ;;  # twice the default's spike-rate target: more on per face
    vsc-target0.2) echo "--model vsc --rate-target 0.2" ;;  # four times it: about 50 of 256 on per face
    thresholded-kl0.01) echo "--model thresholded --kl-weight 0.01" ;;  # Fallah & Rozell's KL weight
    vsc-ch16) echo "--model vsc --channels 16,32,64,128" ;;  # half the channels: a quarter of the conv weights, less to memorise
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
mkdir -p docs/results/celeba-conv/curves
for V in "$@"; do
  S=$(settings "$V") || exit 2
  NAME=$V-d$DIM-i$ITER
  RUN=runs/celeba64-$NAME
  OUT=docs/results/celeba-conv/$NAME.json
  [ -f "$OUT" ] && { echo "== $NAME done"; continue; }
  echo "== $NAME ($S) $(date -u +%FT%TZ)"
  if [ -f "$RUN/checkpoint.safetensors" ]; then
    nice -n 5 taskset -c "$CORE" vsc train --resume "$RUN" --data-dir "$DATA_DIR" --quiet || exit 1
  else
    nice -n 5 taskset -c "$CORE" vsc train --data celeba --network conv --image-size 64 --dim "$DIM" --alpha 0.01 \
      --iterations "$ITER" --batch-size 64 --lr "$LR" --logvar-init data --checkpoint-every 500 $S --out "$RUN" \
      --force --data-dir "$DATA_DIR" --quiet || exit 1
  fi
  nice -n 5 taskset -c "$CORE" python benchmarks/reconstruction.py "$RUN" --data-dir "$DATA_DIR" > "$OUT.part" \
    && python - "$OUT.part" "$RUN" "$S --lr $LR" <<'PY' && mv "$OUT.part" "$OUT"
import json, sys
path, run, settings = sys.argv[1:]
r = json.load(open(path))
m = json.load(open(f"{run}/metrics.json"))
r.update(settings=settings, test_elbo=m["test_elbo"], test_sparsity=m["test_sparsity"], seconds=m["seconds"],
         seconds_per_1000_iterations=m["seconds_per_1000_iterations"], iterations=m["iterations"])
json.dump(r, open(path, "w"), indent=2)
PY
  cp "$RUN/log.csv" "docs/results/celeba-conv/curves/$NAME.csv"
done
echo "== done $(date -u +%FT%TZ)"

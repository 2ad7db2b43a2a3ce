#!/bin/bash
# Fashion-MNIST / MNIST, the conv network against the paper's MLP: 200 dims, batch 256, one run per
# (dataset, network, family, alpha) in runs/cvm-NAME; each finished run's test ELBO, linear-classifier accuracy on 5,000
# labelled codes (vsc classify, 5 draws) and code metrics (vsc sparsity) go to docs/results/conv-vs-mlp/NAME.json.
# Resumable: a half-trained run resumes.
#   nohup setsid benchmarks/conv_vs_mlp.sh CORE ITERATIONS DATA ALPHA NETWORK:FAMILY[:lvdata]... > logs/cvm.log 2>&1 &
#   e.g. benchmarks/conv_vs_mlp.sh 0 10000 fmnist 0.1 conv:vsc conv:vae mlp:vsc mlp:vae
# (:lvdata adds --logvar-init data, the decoder's log-variance started at the data's)
set -u
CORE=${1:?usage: conv_vs_mlp.sh CORE ITERATIONS DATA ALPHA NETWORK:FAMILY...}
ITER=${2:?}
DATA=${3:?}
ALPHA=${4:?}
shift 4
cd "${VSC_ROOT:-$(dirname "$0")/..}"
export OMP_NUM_THREADS=1
DATA_DIR=${VSC_DATA_DIR:-../shared/data}
mkdir -p docs/results/conv-vs-mlp/curves
for P in "$@"; do
  IFS=: read -r NET FAM VAR <<< "$P"
  EXTRA=""; SUFFIX=""
  [ "$VAR" = lvdata ] && { EXTRA="--logvar-init data"; SUFFIX="-lvdata"; }
  NAME=$DATA-$NET-$FAM$SUFFIX-a$ALPHA-i$ITER
  RUN=runs/cvm-$NAME
  OUT=docs/results/conv-vs-mlp/$NAME.json
  [ -f "$OUT" ] && { echo "== $NAME done"; continue; }
  echo "== $NAME $(date -u +%FT%TZ)"
  T="nice -n 5 taskset -c $CORE"
  if [ -f "$RUN/checkpoint.safetensors" ]; then
    $T vsc train --resume "$RUN" --data-dir "$DATA_DIR" --quiet || exit 1
  else
    $T vsc train --data "$DATA" --network "$NET" --model "$FAM" --dim 200 --alpha "$ALPHA" --iterations "$ITER" \
      --checkpoint-every 1000 $EXTRA --out "$RUN" --force --data-dir "$DATA_DIR" --quiet || exit 1
  fi
  $T vsc encode "$RUN" -o "$RUN/codes.h5" --force --data-dir "$DATA_DIR" --quiet || exit 1
  $T vsc classify "$RUN/codes.h5" --repeats 5 --json --quiet > "$RUN/classify.json" || exit 1
  $T vsc sparsity "$RUN" --json --data-dir "$DATA_DIR" --quiet > "$RUN/sparsity.json" || exit 1
  python - "$RUN" "$OUT" "$NET" "$FAM" "$EXTRA" <<'PY' || exit 1
import json, sys
run, out, net, fam, extra = sys.argv[1:]
m = json.load(open(f"{run}/metrics.json"))
r = {"network": net, "model": fam, "settings": extra, "metrics": m, "classify": json.load(open(f"{run}/classify.json")),
     "sparsity": json.load(open(f"{run}/sparsity.json"))}
json.dump(r, open(out + ".part", "w"), indent=2)
PY
  mv "$OUT.part" "$OUT"
  cp "$RUN/log.csv" "docs/results/conv-vs-mlp/curves/$NAME.csv"
done
echo "== done $(date -u +%FT%TZ)"

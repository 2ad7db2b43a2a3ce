#!/bin/bash
# The specific-codes study's measurements: the default recipe (alpha 0.01, 200 dims, 20,000 iterations) with the aggregate
# spike-rate term and/or centred encoder input, one variant per sweep folder docs/results/codes/codes-DATA-VARIANT.
#   nohup setsid benchmarks/codes.sh fmnist 1 rate1 centre both1 > logs/codes-fmnist.log 2>&1 &
# Resumable like sweeps.sh: finished points (result.json) are skipped, half-trained ones resume.
set -u
DATA=${1:?usage: codes.sh fmnist|mnist CORE VARIANT...}
CORE=${2:?usage: codes.sh fmnist|mnist CORE VARIANT...}
shift 2
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
settings() {  # a variant's --set options on top of --recipe default-1 (the default of vsc 0.3.0)
  case $1 in
    rate1) echo "--set rate_weight=1" ;;
    rate3) echo "--set rate_weight=3" ;;
    centre) echo "--set centre=true" ;;
    both1) echo "--set rate_weight=1 --set centre=true" ;;
    both3) echo "--set rate_weight=3 --set centre=true" ;;
    both10) echo "--set rate_weight=10 --set centre=true" ;;
    both30) echo "--set rate_weight=30 --set centre=true" ;;
    both1-scale) echo "--set rate_weight=1 --set centre=true --set encoder_scale=data" ;;
    both3-t05) echo "--set rate_weight=3 --set rate_target=0.05 --set centre=true" ;;
    both3-t05-scale) echo "--set rate_weight=3 --set rate_target=0.05 --set centre=true --set encoder_scale=data" ;;
    both10-t05) echo "--set rate_weight=10 --set rate_target=0.05 --set centre=true" ;;
    both3-scale) echo "--set rate_weight=3 --set centre=true --set encoder_scale=data" ;;
    centre-scale) echo "--set centre=true --set encoder_scale=data" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
for V in "$@"; do
  S=$(settings "$V") || exit 2
  echo "== $DATA $V ($S) $(date -u +%FT%TZ)"
  nice -n 5 taskset -c "$CORE" vsc experiment alpha --data "$DATA" --alphas 0.01 --recipe default-1 $S \
    --data-dir "${VSC_DATA_DIR:-../shared/data}" --quiet --out "docs/results/codes/codes-$DATA-$V"
done
echo "== done $(date -u +%FT%TZ)"

#!/bin/bash
# Both series of the paper's sweeps (the paper's recipe, then vsc's default recipe), one dataset per core, resumable:
#   nohup setsid benchmarks/sweeps.sh fmnist 1 > logs/sweeps-fmnist.log 2>&1 &
#   nohup setsid benchmarks/sweeps.sh mnist 0 > logs/sweeps-mnist.log 2>&1 &
# Each `vsc experiment` skips finished points (their result.json) and resumes half-trained ones, so the
# script can be restarted at any time; commit docs/results/*/*/points/*/result.json as they land.
set -u
DATA=${1:?usage: sweeps.sh fmnist|mnist CORE}
CORE=${2:?usage: sweeps.sh fmnist|mnist CORE}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
E="nice -n 5 taskset -c $CORE vsc experiment"
A="--data $DATA --data-dir ${VSC_DATA_DIR:-../shared/data} --quiet"
$E alpha $A --out docs/results/paper-sweeps/$DATA-alpha
$E dims $A --out docs/results/paper-sweeps/$DATA-dims
$E dims $A --recipe default --models vsc:0.01 --out docs/results/default-recipe/default-$DATA-dims
$E alpha $A --recipe default --out docs/results/default-recipe/default-$DATA-alpha

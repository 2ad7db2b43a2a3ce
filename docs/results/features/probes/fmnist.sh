#!/usr/bin/env bash
# Fashion-MNIST, 200 dims, 20,000 iterations: sparse probes and consistency of the VAE, VSC default-2 (alpha 0.01)
# and top-k (k 6, about default-2's active count)
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { /work/venv/bin/python -c 'import sys; from vsc_cli.cli import main; sys.argv[0]="vsc"; sys.exit(main())' "$@"; }
core=$1; shift
for spec in "$@"; do
  set -- $spec; name=$1; shift; S=$(date +%s)
  taskset -c $core bash -c "$(declare -f vsc); vsc train --data fmnist --data-dir /work/shared/data --dim 200 --out $name --quiet $*" > $name.train.txt 2>&1
  taskset -c $core bash -c "$(declare -f vsc); vsc encode $name -o $name.h5 --data-dir /work/shared/data --quiet" > /dev/null 2>&1
  taskset -c $core bash -c "$(declare -f vsc); vsc classify $name.h5 --sparse-probe 1,2,5 --json --quiet" > $name.probe.json 2>&1
  taskset -c $core bash -c "$(declare -f vsc); vsc classify $name.h5 --json --quiet" > $name.classify.json 2>&1
  taskset -c $core bash -c "$(declare -f vsc); vsc sparsity $name --data-dir /work/shared/data --consistency --json --quiet" > $name.sparsity.json 2>&1
  echo "$name $(( $(date +%s) - S )) s" >> done.txt
done

#!/usr/bin/env bash
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { /work/venv/bin/python -c 'import sys; from vsc_cli.cli import main; sys.argv[0]="vsc"; sys.exit(main())' "$@"; }
if [ $1 = signed ]; then S=$(date +%s)
  taskset -c 0 bash -c "$(declare -f vsc); vsc train --data x-signed.npz --normalise 01 --dim 200 --alpha 0.05 --iterations 20000 --logvar-init data --out signed-default-lvdata-20k --quiet" > signed-default-lvdata-20k.train.txt 2>&1
  taskset -c 0 bash -c "$(declare -f vsc); vsc sparsity signed-default-lvdata-20k --truth x-signed.npz --json --quiet" > signed-default-lvdata-20k.json 2>&1
  echo "signed-default-lvdata-20k $(( $(date +%s) - S )) s" >> done-fix2.txt
else S=$(date +%s)
  # Fashion-MNIST, the committed default-2 point (alpha 0.01, 200 dims, 20,000 iterations) with --logvar-init data
  taskset -c 1 bash -c "$(declare -f vsc); vsc train --data fmnist --data-dir /work/shared/data --dim 200 --alpha 0.01 --logvar-init data --out fmnist-default2-lvdata --quiet" > fmnist-default2-lvdata.train.txt 2>&1
  taskset -c 1 bash -c "$(declare -f vsc); vsc encode fmnist-default2-lvdata -o fmnist-default2-lvdata.h5 --data-dir /work/shared/data --quiet" > /dev/null 2>&1
  taskset -c 1 bash -c "$(declare -f vsc); vsc classify fmnist-default2-lvdata.h5 --json --quiet" > fmnist-default2-lvdata.classify.json 2>&1
  taskset -c 1 bash -c "$(declare -f vsc); vsc sparsity fmnist-default2-lvdata --data-dir /work/shared/data --json --quiet" > fmnist-default2-lvdata.sparsity.json 2>&1
  echo "fmnist-default2-lvdata $(( $(date +%s) - S )) s" >> done-fix2.txt
fi

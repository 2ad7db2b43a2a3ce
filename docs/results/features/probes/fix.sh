#!/usr/bin/env bash
# why the signed set collapses: the default recipe with the decoder's log-variance started at the data's
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { /work/venv/bin/python -c 'import sys; from vsc_cli.cli import main; sys.argv[0]="vsc"; sys.exit(main())' "$@"; }
while [ "$(wc -l < done-m.txt 2>/dev/null || echo 0)" -lt 5 ]; do sleep 10; done
for v in signed nonnegative; do S=$(date +%s)
  taskset -c 1 bash -c "$(declare -f vsc); vsc train --data x-$v.npz --normalise 01 --dim 200 --alpha 0.05 --iterations 5000 --logvar-init data --out $v-default-lvdata --quiet" > $v-default-lvdata.train.txt 2>&1
  taskset -c 1 bash -c "$(declare -f vsc); vsc sparsity $v-default-lvdata --truth x-$v.npz --json --quiet" > $v-default-lvdata.json 2>&1
  echo "$v-default-lvdata $(( $(date +%s) - S )) s" >> done-fix.txt
done

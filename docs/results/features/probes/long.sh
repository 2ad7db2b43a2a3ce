#!/usr/bin/env bash
# 20,000-iteration default recipe on both sparse-linear sets (core 0); manifolds at 5,000 for every family (core 1)
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { /work/venv/bin/python -c 'import sys; from vsc_cli.cli import main; sys.argv[0]="vsc"; sys.exit(main())' "$@"; }
which=$1
if [ $which = long ]; then
  for v in nonnegative signed; do S=$(date +%s)
    taskset -c 0 bash -c "$(declare -f vsc); vsc train --data x-$v.npz --normalise 01 --dim 200 --alpha 0.05 --iterations 20000 --out $v-default-20k --quiet" > $v-default-20k.train.txt 2>&1
    taskset -c 0 bash -c "$(declare -f vsc); vsc sparsity $v-default-20k --truth x-$v.npz --json --quiet" > $v-default-20k.json 2>&1
    echo "$v-default-20k $(( $(date +%s) - S )) s" >> done-long.txt; done
else
  [ -f m.npz ] || vsc synth manifolds -o m.npz > /dev/null
  for fam in "default --model vsc --alpha 0.05" "paper --model vsc --alpha 0.05 --paper" "vae --model vae" "thresholded --model thresholded" "topk --model topk --k 3"; do
    set -- $fam; name=$1; shift; S=$(date +%s)
    taskset -c 1 bash -c "$(declare -f vsc); vsc train --data m.npz --normalise 01 --dim 200 --iterations 5000 --out m-$name --quiet $*" > m-$name.train.txt 2>&1
    taskset -c 1 bash -c "$(declare -f vsc); vsc sparsity m-$name --truth m.npz --json --quiet" > m-$name.json 2>&1
    echo "m-$name $(( $(date +%s) - S )) s" >> done-m.txt; done
fi

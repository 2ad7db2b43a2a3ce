#!/usr/bin/env bash
# first probe of the known-factor sets: 20,000 images (2,000 test), K 100, 5 on, 200 dims, 5,000 iterations, one thread
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { /work/venv/bin/python -c 'import sys; from vsc_cli.cli import main; sys.argv[0]="vsc"; sys.exit(main())' "$@"; }
values=$1; core=$2
[ -f x-$values.npz ] || vsc synth sparse-linear -o x-$values.npz --values $values > /dev/null
for fam in "default --model vsc --alpha 0.05" "paper --model vsc --alpha 0.05 --paper" "vae --model vae" "thresholded --model thresholded" "topk --model topk --k 5"; do
  set -- $fam; name=$1; shift
  S=$(date +%s)
  taskset -c $core bash -c "$(declare -f vsc); vsc train --data x-$values.npz --normalise 01 --dim 200 --iterations 5000 --out $values-$name --quiet $*" > $values-$name.train.txt 2>&1
  taskset -c $core bash -c "$(declare -f vsc); vsc sparsity $values-$name --truth x-$values.npz --json --quiet" > $values-$name.json 2>&1
  echo "$values-$name $(( $(date +%s) - S )) s" >> done.txt
done

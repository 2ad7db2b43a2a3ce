#!/usr/bin/env bash
# The numbers a refactor must not move: eight 300-iteration runs (Fashion-MNIST, 200 dims, alpha 0.01: the paper's
# recipe, default-1, default-2, the pseudo-input and mixture priors, the thresholded family, the VAE with Gaussian and
# Bernoulli likelihoods), then vsc sparsity / encode / classify on two of them. One thread, so that two checkouts
# compare bit for bit on one machine:
#   PYTHONPATH=<old checkout as vsc_cli + vsc_kernels> benchmarks/reference_runs.sh OUT_BEFORE
#   benchmarks/reference_runs.sh OUT_AFTER;  python benchmarks/compare_runs.py OUT_BEFORE OUT_AFTER
set -u
OUT=$1; DATA_DIR=${VSC_DATA_DIR:-../shared/data}; PY=${PYTHON:-python}
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
vsc() { "$PY" -c 'import sys; from vsc_cli.cli import main; sys.argv[0] = "vsc"; sys.exit(main())' "$@"; }
D="--data fmnist --data-dir $DATA_DIR --iterations 300 --dim 200 --log-every 20 --checkpoint-every 100 --quiet"
mkdir -p "$OUT"
run() { name=$1; shift; vsc train $D --out "$OUT/$name" "$@" > "$OUT/$name.out" 2>&1; echo "$name rc=$?" >> "$OUT/status"; }
run paper --paper --alpha 0.01
run default1 --recipe default-1 --alpha 0.01
run default2 --recipe default-2 --alpha 0.01
run pseudo --recipe default-1 --prior pseudo-inputs --alpha 0.01
run mixture --recipe default-1 --prior pseudo-mixture --alpha 0.01
run thresholded --model thresholded
run vae --model vae
run vaebern --model vae --likelihood bernoulli --normalise 01
vsc sparsity "$OUT/default2" --data-dir "$DATA_DIR" --json --quiet > "$OUT/sparsity-default2.json" 2>&1
vsc sparsity "$OUT/thresholded" --data-dir "$DATA_DIR" --json --quiet > "$OUT/sparsity-thr.json" 2>&1
vsc sparsity "$OUT/default2" --data-dir "$DATA_DIR" --quiet > "$OUT/sparsity-default2.txt" 2>&1
vsc encode "$OUT/default2" -o "$OUT/codes.h5" --data-dir "$DATA_DIR" --quiet --limit 2000 > "$OUT/encode.txt" 2>&1
vsc classify "$OUT/codes.h5" --labelled 500,1000 --repeats 2 --quiet > "$OUT/classify.txt" 2>&1
vsc classify "$OUT/codes.h5" --labelled 500 --repeats 2 --json --quiet > "$OUT/classify.json" 2>&1
vsc sparsity "$OUT/codes.h5" --quiet > "$OUT/sparsity-codes.txt" 2>&1
echo done >> "$OUT/status"

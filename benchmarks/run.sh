#!/usr/bin/env bash
# Produces the figures quoted in benchmarks/RESULTS.md, on whatever machine runs it:
#   1. the spike-slab op, forward + backward, per implementation (vsc bench);
#   2. training iterations per second of the paper's network per backend (vsc bench --train).
# Usage: benchmarks/run.sh [--device cuda]   (results go to benchmarks/results/<host>-<device>-*.json)
set -euo pipefail
device=cpu
if [ "${1:-}" = "--device" ]; then device=$2; fi
cd "$(dirname "$0")/.."
tag="$(hostname)-${device}"
vsc bench --device "$device" --json > "benchmarks/results/${tag}-op.json"
vsc bench --device "$device" --train --json > "benchmarks/results/${tag}-train.json"
python - "benchmarks/results/${tag}-op.json" "benchmarks/results/${tag}-train.json" <<'PY'
import json, sys
op, tr = (json.load(open(p)) for p in sys.argv[1:3])
m = op["machine"]
print(f"machine: {m.get('gpu') or m['processor']}, torch {m['torch']} ({m['torch_threads']} threads), "
      f"numba {m.get('numba')}; copy bandwidth {op['copy_bandwidth_gbps']:.1f} GB/s; median of {op['repeats']}\n")
print("| size | impl | ms | x torch eager | GB/s | x bandwidth bound |\n|---|---|---|---|---|---|")
for r in op["rows"]:
    if "error" in r:
        print(f"| {r['size']} | {r['impl']} | error: {r['error'][:60]} | | | |")
    else:
        sp = f"{r['speedup_vs_eager']:.1f}" if r["speedup_vs_eager"] else ""
        print(f"| {r['size']} | {r['impl']} | {r['ms']:.3f} | {sp} | {r['gbps']:.1f} | {r['x_bandwidth_bound']:.2f} |")
print(f"\n| backend | ms / training iteration (784-400-{tr['dim']}, batch {tr['batch_size']}) | it/s |\n|---|---|---|")
for r in tr["rows"]:
    print(f"| {r['backend']} | {r['ms_per_iteration']:.2f} | {r['iterations_per_second']:.1f} |")
PY

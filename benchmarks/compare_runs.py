"""Compare two folders of benchmarks/reference_runs.sh: log.csv (every column but seconds), metrics.json (but the
timings and the version) and the command outputs, each identical or not.

    python benchmarks/compare_runs.py OUT_BEFORE OUT_AFTER
"""
import csv
import json
import sys
from pathlib import Path

TIMES = {"seconds", "seconds_per_1000_iterations", "images_per_second", "vsc_version"}
OUTPUTS = ["sparsity-default2.json", "sparsity-thr.json", "sparsity-default2.txt", "classify.txt", "classify.json",
           "sparsity-codes.txt", "encode.txt"]


def log(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def metrics(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMES}


def text(folder: Path, name: str) -> str:
    return (folder / name).read_text().replace(str(folder), "OUT")


def main(a: Path, b: Path) -> int:
    same = True
    for run in sorted(p.name for p in a.iterdir() if p.is_dir()):
        la, lb = log(a / run / "log.csv"), log(b / run / "log.csv")
        ma, mb = metrics(a / run / "metrics.json"), metrics(b / run / "metrics.json")
        differ = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        print(f"{run:12s} log.csv ({len(la)} rows) {'identical' if la == lb else 'DIFFERS'}; "
              f"metrics {'identical' if not differ else 'DIFFER: ' + ', '.join(differ)}")
        same &= la == lb and not differ
    for name in OUTPUTS:
        ok = text(a, name) == text(b, name)
        print(f"{name:24s} {'identical' if ok else 'DIFFERS'}")
        same &= ok
    print("all identical" if same else "some differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))

"""Hand-written mutants of vsc's core, each a small deliberate bug that the test suite must catch.

    python tests/mutation.py              # every mutant, two at a time; a table at the end
    python tests/mutation.py --list       # the mutants and the tests each one runs
    python tests/mutation.py eq11-spike-half c-schedule-shifted --jobs 1

Each mutant is applied to a scratch copy of the working tree (tracked and untracked-but-not-ignored files),
and the tests named for it run there (pytest -x, imports from the copy: PYTHONPATH, with a vsc_kernels link
to kernels/). A mutant is "killed" when those tests fail, "survived" when they pass. The unmutated copy runs
first over the union of the tests, so a failure there is reported instead of counted as kills. Exit status 1
when any mutant survived. Not part of `python -m pytest` (about 15-30 minutes on two cores).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KERNEL = ("tests/test_kernels.py", "tests/test_elbo.py")
REFERENCE = ("tests/test_reference.py", "tests/test_elbo.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str  # the bug, in words
    file: str
    old: str  # replaced once: must occur in the file
    new: str
    tests: tuple


MUTANTS = [
    # eq. 9, the slab term gamma * KL(N(mu, sigma^2) || N(0, 1)): in the fused kernels and in the torch reference
    Mutant("eq9-slab-no-gamma-kernel", "fused kernel: slab KL without its gamma factor", "kernels/_element.py",
           "kl_slab = g * half * (mu * mu", "kl_slab = half * (mu * mu", KERNEL),
    Mutant("eq9-slab-no-gamma-saved", "fused kernel (forward with saved partials): slab KL without gamma",
           "kernels/_element.py", "return (s * slab, g * k, kl_spike,", "return (s * slab, k, kl_spike,", KERNEL),
    Mutant("eq9-slab-no-gamma-ref", "torch reference: slab KL without gamma", "kernels/reference.py",
           "slab = (gamma * kl_slab(mu, logvar)).sum(-1)", "slab = kl_slab(mu, logvar).sum(-1)", REFERENCE),
    # eq. 9, the spike term KL(Bern(gamma) || Bern(alpha))
    Mutant("eq9-spike-no-off-term-kernel", "fused kernel: spike KL without its (1 - gamma) term",
           "kernels/_element.py",
           "kl_spike = g * (lg - log_alpha) + (omg * (log_omg - log1m_alpha) if positive else zero)\n        return z,",
           "kl_spike = g * (lg - log_alpha)\n        return z,", KERNEL),
    Mutant("eq9-spike-no-off-term-ref", "torch reference: spike KL without its (1 - gamma) term",
           "kernels/reference.py", "return gamma * (log_gamma - log_p) + inactive",
           "return gamma * (log_gamma - log_p)", REFERENCE),
    Mutant("eq9-spike-grad-kernel", "fused kernel: d spike KL / dv with log alpha's sign flipped",
           "kernels/_element.py", "gv * (lg - log_alpha - log_omg + log1m_alpha))",
           "gv * (lg + log_alpha - log_omg + log1m_alpha))", KERNEL),
    # eq. 11: ELBO = recon - slab KL - spike KL
    Mutant("eq11-spike-half", "model: ELBO = recon - kl_slab - 0.5 kl_spike", "vsc_cli/models/vae.py",
           "elbo = elbo - kl[k]",
           'elbo = elbo - (0.5 if k == "kl_spike" else 1.0) * kl[k]',
           ("tests/test_elbo.py",)),
    # A.1: the Gaussian decoder's log-likelihood, -1/2 sum(log 2 pi + logvar + (x - mean)^2 exp(-logvar))
    Mutant("a1-loglik-no-logvar-ref", "torch reference: Gaussian log-likelihood without the log-variance term",
           "kernels/loglik.py", "return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2", "return -0.5 * (LOG_2PI + (x - mean) ** 2",
           ("tests/test_loglik.py", "tests/test_elbo.py")),
    Mutant("a1-loglik-no-logvar-kernel", "fused kernel: the element's term without its log-variance",
           "kernels/loglik.py", "return lv + q, g_mean, -half * (one - q) * sig", "return q, g_mean, -half * (one - q) * sig",
           ("tests/test_loglik.py", "tests/test_elbo.py")),
    Mutant("a1-loglik-grad-kernel", "fused kernel: d ll / d raw without the softplus' derivative",
           "kernels/loglik.py", "return lv + q, g_mean, -half * (one - q) * sig", "return lv + q, g_mean, -half * (one - q)",
           ("tests/test_loglik.py", "tests/test_elbo.py")),
    # eq. 12: log gamma = -ReLU(-v)
    Mutant("eq12-ref", "torch reference: log gamma = -ReLU(v)", "kernels/reference.py",
           "return -torch.relu(-v)", "return -torch.relu(v)", REFERENCE),
    Mutant("eq12-kernel", "fused kernel: log gamma = min(v / 2, 0)", "kernels/_element.py",
           "lg = min(v, zero)", "lg = min(half * v, zero)", KERNEL),
    # eq. 24: z = S(c (eta - 1 + gamma)) (mu + sigma eps)
    Mutant("eq24-selection-kernel", "fused kernel: selection S(c (eta - gamma))", "kernels/_element.py",
           "c * (eta - one + g)", "c * (eta - g)", KERNEL),
    Mutant("eq24-selection-ref", "torch reference: selection S(c (eta - gamma))", "kernels/reference.py",
           "        selection = torch.sigmoid(c * (eta - 1.0 + gamma))",
           "        selection = torch.sigmoid(c * (eta - gamma))", REFERENCE),
    Mutant("eq25-exact-draw", "exact (evaluation) draw: on where eta < gamma instead of eta > 1 - gamma",
           "kernels/reference.py", "selection = (eta - 1.0 + gamma >= 0)", "selection = (gamma - eta >= 0)",
           REFERENCE),
    Mutant("pretrain-slab-unscaled", "spike pre-training: the sample's log-variance not scaled by lambda",
           "kernels/reference.py", "torch.exp(0.5 * lam * logvar) * eps", "torch.exp(0.5 * logvar) * eps",
           ("tests/test_spike_slab.py", "tests/test_elbo.py")),
    # C.2: c from 50 to 200, one step per iteration
    Mutant("c-schedule-shifted", "training: c_schedule(it + 1)", "vsc_cli/models/schedule.py",
           "return Step(c=c_schedule(it, cfg.iterations", "return Step(c=c_schedule(it + 1, cfg.iterations",
           ("tests/test_train.py::test_c_schedule_reaches_training",)),
    Mutant("c-schedule-endpoint", "schedule: reaches c_end one iteration after the last", "vsc_cli/models/schedule.py",
           "frac = min(max(iteration / (iterations - 1), 0.0), 1.0)", "frac = min(max(iteration / iterations, 0.0), 1.0)",
           ("tests/test_schedule.py", "tests/test_train.py::test_c_schedule_reaches_training")),
    # D.2: unit L2 norm per image
    Mutant("unit-norm-l1", "data: unit L1 norm instead of L2", "vsc_cli/data/datasets.py",
           "norms = np.linalg.norm(x, axis=1, keepdims=True)", "norms = np.abs(x).sum(axis=1, keepdims=True)",
           ("tests/test_data.py",)),
    # 4.2: n labelled training codes, the whole test split
    Mutant("classify-all-codes", "classify: trains on every training code, whatever --labelled says",
           "vsc_cli/evaluation/classify.py", "predict = train_linear(x_train[pick], y_train[pick], classes)",
           "predict = train_linear(x_train, y_train, classes)", ("tests/test_codes.py",)),
    Mutant("classify-test-prefix", "classify: scores only the first 100 test codes", "vsc_cli/evaluation/classify.py",
           "accs.append(float((predict(x_test) == y_test).mean()))",
           "accs.append(float((predict(x_test[:100]) == y_test[:100]).mean()))", ("tests/test_codes.py",)),
    # the deterministic code E_q[z] = gamma * mu
    Mutant("encode-code-mu", "encode: code = mu (gamma dropped)", "vsc_cli/evaluation/codes.py",
           "code = gamma * mu", "code = mu", ("tests/test_codes.py",)),
    # the checkpoint's SHA-256
    Mutant("checkpoint-sha-unchecked", "checkpoint reader: SHA-256 not compared", "vsc_cli/trainers/checkpoint.py",
           "if _digest(header_wo, [data]) != stored_digest:", "if False:", ("tests/test_checkpoint.py",)),
]


def scratch_copy(dest: Path) -> None:
    """The working tree as git sees it (tracked + untracked-not-ignored), without .git and ignored outputs."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "vsc_kernels").symlink_to("kernels", target_is_directory=True)


def run_tests(copy: Path, tests, timeout: float) -> tuple[str, float, str]:
    """pytest -x on `tests` in `copy`: ('passed' | 'failed' | 'timeout' | 'error', seconds, last lines)."""
    env = dict(os.environ, PYTHONPATH=str(copy), VSC_TEST_DATA=os.environ.get("VSC_TEST_DATA", "")
               or str(ROOT.parent / "shared" / "data"))
    env.pop("NUMBA_CACHE_DIR", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    # the test that caught the mutant (pytest -rfE summary), then the totals line
    caught = [ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))][:1]
    tail = "\n".join(caught + lines[-1:])
    status = {0: "passed", 1: "failed"}.get(proc.returncode, "error")
    return status, time.perf_counter() - t0, tail


def check_imports(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-c", "import vsc_cli, vsc_kernels; print(vsc_cli.__file__); "
                          "print(vsc_kernels.__file__)"], cwd=copy, env=env, capture_output=True, text=True)
    paths = out.stdout.split()
    if out.returncode or len(paths) != 2 or not all(Path(p).resolve().is_relative_to(copy.resolve()) for p in paths):
        sys.exit(f"the scratch copy does not import its own code ({out.stdout.strip()} {out.stderr.strip()})")


def mutate(m: Mutant, workdir: Path, timeout: float) -> dict:
    copy = workdir / m.name
    scratch_copy(copy)
    path = copy / m.file
    text = path.read_text()
    if m.old not in text:
        return {"mutant": m.name, "status": "not applied", "seconds": 0.0,
                "detail": f"{m.file} no longer contains {m.old!r}: update the mutant"}
    path.write_text(text.replace(m.old, m.new, 1))
    status, seconds, tail = run_tests(copy, m.tests, timeout)
    shutil.rmtree(copy, ignore_errors=True)
    result = {"passed": "survived", "failed": "killed"}.get(status, status)
    return {"mutant": m.name, "status": result, "seconds": round(seconds, 1), "detail": tail.replace("\n", " | ")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per mutant's tests (default 1800)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (when you know it passes)")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        ap.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:30} {m.what}\n{'':30} {m.file}; tests: {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="vsc-mutants-") as tmp:
        workdir = Path(tmp)
        base = workdir / "baseline"
        scratch_copy(base)
        check_imports(base)
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests})
            status, seconds, tail = run_tests(base, tests, args.timeout)
            print(f"baseline (no mutant): {status} in {seconds:.0f} s", flush=True)
            if status != "passed":
                print(tail)
                return 2
        results = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(mutate, m, workdir, args.timeout) for m in chosen]
            for fut in concurrent.futures.as_completed(futures):
                r = fut.result()
                results.append(r)
                print(f"{r['mutant']}: {r['status']} ({r['seconds']:.0f} s)", flush=True)
    order = {m.name: i for i, m in enumerate(MUTANTS)}
    results.sort(key=lambda r: order[r["mutant"]])
    what = {m.name: m for m in MUTANTS}
    print("\n| mutant | the bug | tests run | result | caught by | seconds |\n|---|---|---|---|---|---|")
    for r in results:
        m = what[r["mutant"]]
        by = r["detail"].split(" | ")[0].removeprefix("FAILED ").removeprefix("ERROR ") if r["status"] == "killed" else ""
        print(f"| {m.name} | {m.what} | {', '.join(t.removeprefix('tests/') for t in m.tests)} | {r['status']} | "
              f"{by.removeprefix('tests/')} | {r['seconds']:.0f} |")
    killed = sum(r["status"] == "killed" for r in results)
    print(f"\n{killed} of {len(results)} mutants killed")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

import os

# The CUDA kernels run under Numba's simulator in CI; the variable must be set before numba is
# imported. On a machine with a real GPU, run `NUMBA_ENABLE_CUDASIM=0 python -m pytest`.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Prepared-data caches (CelebA) go to a throw-away folder, not the user's ~/.cache/vsc
os.environ.setdefault("VSC_CACHE_DIR", tempfile.mkdtemp(prefix="vsc-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]


DATASETS = ("mnist", "fashion-mnist", "celeba")  # the folders tests read (../shared/data/README.md)


def _is_data_root(path: Path) -> bool:
    return all((path / name).is_dir() for name in DATASETS)


def shared_data_dir() -> Path | None:
    """The real datasets: $VSC_TEST_DATA (an error if it is not such a folder), else ../shared/data beside the
    checkout, else None (those tests skip, or fail with VSC_REQUIRE_DATA=1, as in CI)."""
    env = os.environ.get("VSC_TEST_DATA")
    if env:
        if not _is_data_root(Path(env)):
            raise pytest.UsageError(f"VSC_TEST_DATA={env} does not hold {', '.join(DATASETS)}; "
                                    "fix or unset it")
        return Path(env)
    default = ROOT.parent / "shared" / "data"
    return default if _is_data_root(default) else None


def data_required() -> bool:
    return os.environ.get("VSC_REQUIRE_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("real datasets not found (set VSC_TEST_DATA or provide ../shared/data)")
    return path


def recording(calls: list, fn, name):
    """fn, wrapped to append name(args) to `calls` on every call (spies that tell a kernel from a fall-back)."""
    def wrapper(*args, **kwargs):
        calls.append(name(args))
        return fn(*args, **kwargs)
    return wrapper


def _listing(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def pytest_sessionstart(session):
    root = shared_data_dir()
    if root is None and data_required():  # CI: a run that would skip the real-data tests is a failure
        raise pytest.UsageError("VSC_REQUIRE_DATA is set but the real datasets were not found: set VSC_TEST_DATA "
                                f"or provide {ROOT.parent / 'shared' / 'data'} ({', '.join(DATASETS)})")
    session.config._vsc_shared = (root, _listing(root)) if root else None


def pytest_sessionfinish(session, exitstatus):
    """The shared data are read-only by rule: fail the run if any test wrote into them."""
    recorded = getattr(session.config, "_vsc_shared", None)
    if recorded and _listing(recorded[0]) != recorded[1]:
        print(f"\nERROR: the tests changed files under {recorded[0]}, which must stay read-only")
        session.exitstatus = 1


def assert_within(label, got, want, bound):
    """Fail naming the worst element when |got - want| exceeds the elementwise bound (NaN fails too)."""
    import numpy as np
    import torch

    err = (got.double() - want).abs()
    bad = ~(err <= bound)
    if bad.any():
        i = int(torch.argmax(torch.where(bad, err / bound, torch.zeros_like(err))))
        idx = tuple(int(t) for t in np.unravel_index(i, tuple(err.shape)))
        pytest.fail(f"{label}: {int(bad.sum())} of {err.numel()} elements out of bounds; worst at {idx}: "
                    f"got {float(got.flatten()[i]):.9g}, reference {float(want.flatten()[i]):.9g}, "
                    f"|diff| {float(err.flatten()[i]):.3g} > bound {float(bound.flatten()[i]):.3g}")


def rand(*shape, seed=0, scale=1.0):
    """Seeded standard normal float64 numbers, times scale."""
    import torch

    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

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


def shared_data_dir() -> Path | None:
    """The real datasets: $VSC_TEST_DATA, else ../shared/data beside the checkout."""
    for cand in (os.environ.get("VSC_TEST_DATA"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "fashion-mnist").is_dir():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("real datasets not found (set VSC_TEST_DATA or provide ../shared/data)")
    return path


def _listing(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def pytest_sessionstart(session):
    root = shared_data_dir()
    session.config._vsc_shared = (root, _listing(root)) if root else None


def pytest_sessionfinish(session, exitstatus):
    """The shared data are read-only by rule: fail the run if any test wrote into them."""
    recorded = getattr(session.config, "_vsc_shared", None)
    if recorded and _listing(recorded[0]) != recorded[1]:
        print(f"\nERROR: the tests changed files under {recorded[0]}, which must stay read-only")
        session.exitstatus = 1

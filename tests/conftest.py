import os

# The CUDA kernels run under Numba's simulator in CI; the variable must be set before numba is
# imported. On a machine with a real GPU, run `NUMBA_ENABLE_CUDASIM=0 python -m pytest`.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from pathlib import Path

import pytest

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

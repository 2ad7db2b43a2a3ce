"""The suite's own switches: where the real datasets come from, and when their absence is a failure."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_run(tmp_path, **env):
    """pytest on a one-test file in a fresh folder beside a copy of conftest.py, so ../shared/data is absent."""
    (tmp_path / "repo" / "tests").mkdir(parents=True, exist_ok=True)
    (tmp_path / "repo" / "tests" / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "repo" / "tests" / "test_one.py").write_text(
        "def test_needs_data(shared_data):\n    assert (shared_data / 'mnist').is_dir()\n")
    full = {k: v for k, v in os.environ.items() if k not in ("VSC_TEST_DATA", "VSC_REQUIRE_DATA")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=tmp_path / "repo", env=full, capture_output=True, text=True)


def test_missing_data_skips_locally_and_fails_in_ci(tmp_path):
    local = pytest_run(tmp_path)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = pytest_run(tmp_path, VSC_REQUIRE_DATA="1")
    assert ci.returncode != 0 and "VSC_REQUIRE_DATA is set but the real datasets were not found" in ci.stderr + ci.stdout


def test_a_wrong_vsc_test_data_is_an_error_not_a_fallback(tmp_path):
    result = pytest_run(tmp_path, VSC_TEST_DATA=str(tmp_path / "nowhere"))
    assert result.returncode != 0 and "does not hold mnist" in result.stderr + result.stdout


def test_vsc_test_data_is_used(tmp_path):
    for name in ("mnist", "fashion-mnist", "celeba"):
        (tmp_path / "data" / name).mkdir(parents=True)
    result = pytest_run(tmp_path, VSC_TEST_DATA=str(tmp_path / "data"))
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout

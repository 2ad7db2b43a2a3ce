"""`vsc encode` (HDF5), `vsc classify` and `vsc sparsity`."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.evaluation.classify import classify
from vsc_cli.evaluation.sparsity import sparsity_from_gamma
from vsc_cli.evaluation.metrics import specificity
from vsc_cli.common.config import TrainConfig
from vsc_cli.data.datasets import load_split
from vsc_cli.trainers.checkpoint import build_model, load_checkpoint
from vsc_cli.trainers.train import train


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data="fmnist", dim=12, alpha=0.2, iterations=40, batch_size=50, train_size=500,
                      test_size=100, log_every=20)
    train(cfg, out, data_dir=shared_data, progress=False)
    return out


def test_encode_round_trip(trained_run, shared_data, tmp_path):
    out = tmp_path / "codes.h5"
    result = run("encode", trained_run, "-o", out, "--limit", 300, "--batch-size", 64, "--threshold", 0.3,
                 "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 0, result.output
    model = build_model(load_checkpoint(trained_run))
    with h5py.File(out, "r") as f:
        for key in ("format", "dataset", "model", "alpha", "dim", "normalisation", "checkpoint_sha256",
                    "vsc_version", "created"):
            assert key in f.attrs, key
        assert f.attrs["dataset"] == "fmnist" and f.attrs["dim"] == 12 and f.attrs["alpha"] == pytest.approx(0.2)
        assert (f.attrs["network"], f.attrs["decoder"], f.attrs["hidden"]) == ("mlp", "mlp", "400")  # and its settings
        for split in ("train", "test"):
            g = f[split]
            x, labels = load_split("fmnist", split, shared_data, limit=300, fetch_missing=False)
            with torch.no_grad():
                mu, logvar, v = model.encode(torch.from_numpy(x))
            gamma = torch.exp(torch.clamp(v, max=0))
            np.testing.assert_allclose(g["mu"][()], mu.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(g["logvar"][()], logvar.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(g["gamma"][()], gamma.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(g["code"][()], (gamma * mu).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(g["labels"][()], labels)
            assert g["mu"].compression == "gzip" and g["mu"].chunks is not None
            # the CSR copy, rebuilt by hand, equals the thresholded dense code
            csr = g["code_csr"]
            assert csr.attrs["threshold"] == pytest.approx(0.3)
            indptr, indices, data = csr["indptr"][()], csr["indices"][()], csr["data"][()]
            dense = np.zeros((300, 12), np.float32)
            for i in range(300):
                dense[i, indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
            code, gam = g["code"][()], g["gamma"][()]
            np.testing.assert_array_equal(dense, np.where(gam > 0.3, code, 0))
            assert indptr[-1] == (gam > 0.3).sum() > 0
            # the split's example-specificity attributes, at the file's threshold
            want = specificity(gam, labels, 0.3)
            for key in ("active_mean", "active_p50", "dims_used", "dims_always_on", "dims_dead",
                        "jaccard_different_class", "jaccard_same_class"):
                assert g.attrs[key] == pytest.approx(want[key]), key


def test_encode_refuses_existing_output_and_missing_folder(trained_run, shared_data, tmp_path):
    out = tmp_path / "codes.h5"
    out.write_bytes(b"keep me")
    result = run("encode", trained_run, "-o", out, "--limit", 10, "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 1 and "--force" in result.output and out.read_bytes() == b"keep me"
    result = run("encode", trained_run, "-o", tmp_path / "nope" / "c.h5", "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    result = run("encode", trained_run, "-o", out, "--split", "valid")
    assert result.exit_code == 2 and "--split" in result.output


def test_interrupted_encode_leaves_no_output(trained_run, shared_data, tmp_path):
    out = tmp_path / "codes.h5"
    env = dict(os.environ, VSC_DATA_DIR=str(shared_data))
    proc = subprocess.Popen([sys.executable, "-m", "vsc_cli.cli", "encode", str(trained_run), "-o", str(out),
                             "--batch-size", "10", "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".codes.h5.partial-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()  # still running: we kill it mid-way
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # the lock died with the process: a retry runs, completes, and removes the killed run's partial file
    result = run("encode", trained_run, "-o", out, "--limit", 50, "--data-dir", shared_data, "--quiet")
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(tmp_path.glob(".codes.h5.partial-*"))


def write_features(path, x_train, y_train, x_test, y_test):
    with h5py.File(path, "w") as f:
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            f.create_dataset(f"{split}/features", data=x)
            f.create_dataset(f"{split}/labels", data=y)


def blobs(n, rng, centres):
    y = rng.integers(0, len(centres), n)
    return (centres[y] + rng.standard_normal((n, centres.shape[1]))).astype(np.float32), y


def test_classify_separable_and_shuffled(tmp_path):
    rng = np.random.default_rng(0)
    centres = 6 * rng.standard_normal((10, 20))
    (xa, ya), (xb, yb) = blobs(3000, rng, centres), blobs(1000, rng, centres)
    write_features(tmp_path / "sep.h5", xa, ya, xb, yb)
    r = classify(tmp_path / "sep.h5", labelled=[1000], repeats=2)
    assert r["results"][0]["accuracy_mean"] > 0.95
    write_features(tmp_path / "shuf.h5", xa, rng.permutation(ya), xb, yb)
    r = classify(tmp_path / "shuf.h5", labelled=[1000], repeats=2)
    assert abs(r["results"][0]["accuracy_mean"] - 0.1) < 0.05  # chance for 10 classes
    result = run("classify", tmp_path / "sep.h5", "--labelled", "100,500", "--repeats", 3, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [r["labelled"] for r in rows] == [100, 500] and all(len(r["accuracies"]) == 3 for r in rows)


def test_classify_follows_the_papers_protocol(tmp_path, monkeypatch):
    """Section 4.2: exactly n labelled training codes per draw (5,000 by default), scored on the whole test split."""
    import vsc_cli.evaluation.classify as classify_module

    rng = np.random.default_rng(1)
    centres = 6 * rng.standard_normal((10, 20))
    (xa, ya), (xb, yb) = blobs(6000, rng, centres), blobs(1000, rng, centres)
    # the first 100 test images are labelled truly, the other 900 at random: scoring the whole split gives
    # about 0.1 + 0.9 * 0.1 = 0.19, scoring only a prefix about 1
    yb[100:] = rng.integers(0, 10, 900)
    write_features(tmp_path / "codes.h5", xa, ya, xb, yb)
    seen = []
    real = classify_module.train_linear

    def spy(x, y, classes):
        predict = real(x, y, classes)
        rows = {tuple(r) for r in np.asarray(x)}
        assert rows <= {tuple(r) for r in xa} and len(rows) == len(x)  # distinct training codes
        seen.append({"train": len(x), "test": []})
        return lambda q: seen[-1]["test"].append(len(q)) or predict(q)

    monkeypatch.setattr(classify_module, "train_linear", spy)
    r = classify(tmp_path / "codes.h5", labelled=[50, 700], repeats=2)
    assert [s["train"] for s in seen] == [50, 50, 700, 700]
    assert all(s["test"] == [1000] for s in seen) and r["test_examples"] == 1000
    assert all(0.12 < row["accuracy_mean"] < 0.27 for row in r["results"]), r["results"]
    seen.clear()
    result = run("classify", tmp_path / "codes.h5", "--repeats", 1, "--json")  # the default: 5,000 labels
    assert result.exit_code == 0, result.output
    assert [s["train"] for s in seen] == [5000] and json.loads(result.stdout)["results"][0]["labelled"] == 5000
    # fewer training codes than 5,000 (a folder of 1,800 photos): by default every one of them is labelled
    write_features(tmp_path / "few.h5", xa[:1800], ya[:1800], xb, yb)
    seen.clear()
    result = run("classify", tmp_path / "few.h5", "--repeats", 2, "--json")
    assert result.exit_code == 0, result.output
    assert [s["train"] for s in seen] == [1800, 1800] and "all of them are labelled" in result.stderr
    assert json.loads(result.stdout)["labelled_capped"] is True
    asked = run("classify", tmp_path / "few.h5", "--labelled", 5000)  # asked for: still refused, in one line
    assert asked.exit_code == 1 and "--labelled 5000 is more than the 1800" in asked.output


def test_classify_missing_or_wrong_datasets(tmp_path):
    with h5py.File(tmp_path / "no_test.h5", "w") as f:
        f.create_dataset("train/features", data=np.zeros((5, 2), np.float32))
        f.create_dataset("train/labels", data=np.zeros(5, np.int64))
    result = run("classify", tmp_path / "no_test.h5")
    assert result.exit_code == 1 and "no group 'test'" in result.output and "Traceback" not in result.output
    with h5py.File(tmp_path / "no_labels.h5", "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}/features", data=np.zeros((5, 2), np.float32))
    result = run("classify", tmp_path / "no_labels.h5")
    assert result.exit_code == 1 and "'train/labels'" in result.output
    with h5py.File(tmp_path / "mismatch.h5", "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}/features", data=np.zeros((5, 2), np.float32))
            f.create_dataset(f"{split}/labels", data=np.zeros(4, np.int64))
    result = run("classify", tmp_path / "mismatch.h5")
    assert result.exit_code == 1 and "shape" in result.output
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    result = run("classify", tmp_path / "junk.h5")
    assert result.exit_code == 1 and "not a readable HDF5" in result.output
    result = run("classify", tmp_path / "no_labels.h5", "--labelled", "0")
    assert result.exit_code == 2


def test_sparsity_exact_numbers(tmp_path):
    # 4 images x 5 dims; per-dimension mean gamma: 0, 0.25, 0.5, 1, 0.005
    gamma = np.array([[0, 1, 0.5, 1, 0.02],
                      [0, 0, 0.5, 1, 0],
                      [0, 0, 0.5, 1, 0],
                      [0, 0, 0.5, 1, 0]], np.float32)
    r = sparsity_from_gamma(gamma, 0.3)
    assert r["sparsity"] == pytest.approx(gamma.mean())  # 7.02 / 20
    assert r["selected_fraction"] == pytest.approx(5 / 20)  # gamma > 0.5: one 1 in column 1, four in column 3
    assert r["active_per_example"] == pytest.approx(5 / 4)
    # dimensions in use by their active sets (metrics.dimension_use; gamma > 0.5): active in 0, 1/4, 0 (0.5 is not
    # above 0.5), 4/4 and 0 of the images: never 0, 2 and 4; sometimes 1; always 3
    assert (r["dims_never"], r["dims_sometimes"], r["dims_always"]) == (3, 1, 1)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.attrs["alpha"] = 0.3
        f.create_dataset("test/gamma", data=gamma)
    result = run("sparsity", tmp_path / "g.h5", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["alpha"] == 0.3 and got["sparsity"] == pytest.approx(float(gamma.astype(np.float64).mean()))
    assert got["dimension_rates"] == pytest.approx([0, 0.25, 0.5, 1, 0.005])
    assert got["active_mean"] == pytest.approx(5 / 4) and got["jaccard_same_class"] is None  # no labels stored
    result = run("sparsity", tmp_path / "g.h5", "--split", "train")
    assert result.exit_code == 1 and "'train/gamma'" in result.output
    with h5py.File(tmp_path / "g.h5", "a") as f:
        f.create_dataset("test/labels", data=np.array([0, 0, 1, 1]))
    got = json.loads(run("sparsity", tmp_path / "g.h5", "--json").stdout)
    # active sets {1, 3}, {3}, {3}, {3}: pairs (0,1) same class J = 1/2, (2,3) same 1; the 4 others J = 1/2 or 1
    assert got["jaccard_same_class"] == pytest.approx(0.75)
    assert got["jaccard_different_class"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert (got["dims_used"], got["dims_always_on"], got["dims_dead"]) == (2, 1, 3)
    # one definition of a dimension in use: the sparsity rows and the example-specificity rows agree
    assert (got["dims_never"], got["dims_always"]) == (got["dims_dead"], got["dims_always_on"])
    result = run("sparsity", tmp_path / "g.h5")
    assert result.exit_code == 0 and "mean Jaccard of active sets, same class" in result.output
    result = run("sparsity", tmp_path / "g.h5", "--conditional")
    assert result.exit_code == 1 and "needs a run folder" in result.output


def test_sparsity_of_a_run_directory(trained_run, shared_data):
    result = run("sparsity", trained_run, "--data-dir", shared_data, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["examples"] == 10_000 and r["dim"] == 12 and r["alpha"] == pytest.approx(0.2) and 0 < r["sparsity"] < 1
    assert 0 <= r["jaccard_different_class"] <= 1 and r["jaccard_images"] == 10_000
    result = run("sparsity", trained_run, "--data-dir", shared_data, "--json", "--quiet", "--conditional")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert 0 <= r["conditional_retention"] <= 1 and r["image_classifier_accuracy"] > 0.7

"""Sparse probing (vsc_cli/evaluation/classify.py, `vsc classify --sparse-probe`): the element selection against a
loop, and probes that must find a class's one element and must not find one in noise."""
import json

import h5py
import numpy as np
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.evaluation.classify import select_elements, sparse_probe


def test_the_selection_is_the_largest_mean_differences():
    rng = np.random.default_rng(0)
    pos, neg = rng.standard_normal((30, 8)), rng.standard_normal((40, 8)) + np.arange(8) * 0.1
    diffs = [abs(sum(pos[:, j]) / 30 - sum(neg[:, j]) / 40) for j in range(8)]
    want = sorted(range(8), key=lambda j: -diffs[j])
    for k in (1, 3, 8):
        assert select_elements(pos, neg, k).tolist() == want[:k]


def codes_file(path, make_codes, n_train=600, n_test=300, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split, n in (("train", n_train), ("test", n_test)):
            y = rng.integers(0, classes, n)
            f[f"{split}/code"] = make_codes(y, rng).astype(np.float32)
            f[f"{split}/labels"] = y.astype(np.int64)
    return path


def test_one_element_per_class_is_found_at_k_1_and_noise_is_not(tmp_path):
    def features(y, rng):  # element 2 + c is on exactly for class c; the rest noise
        x = rng.standard_normal((len(y), 10))
        x[np.arange(len(y)), 2 + y] += 4.0
        return x

    r = sparse_probe(codes_file(tmp_path / "a.h5", features), ks=(1, 2))
    assert r["classes"] == 3 and [x["k"] for x in r["results"]] == [1, 2]
    assert r["results"][0]["accuracy_mean"] > 0.97  # the class's own element alone separates it
    noise = sparse_probe(codes_file(tmp_path / "b.h5", lambda y, rng: rng.standard_normal((len(y), 10))), ks=(1,))
    assert 0.35 < noise["results"][0]["accuracy_mean"] < 0.65  # balanced: chance is one half
    assert sparse_probe(tmp_path / "a.h5", ks=(1,), seed=3) == sparse_probe(tmp_path / "a.h5", ks=(1,), seed=3)


def test_the_command(tmp_path):
    path = codes_file(tmp_path / "a.h5", lambda y, rng: rng.standard_normal((len(y), 4)) + y[:, None])
    r = CliRunner().invoke(main, ["classify", str(path), "--sparse-probe", "1,2", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert [x["k"] for x in json.loads(r.stdout)["results"]] == [1, 2]
    r = CliRunner().invoke(main, ["classify", str(path), "--sparse-probe", "9"])
    assert r.exit_code == 1 and "more than the 4 elements" in r.output
    r = CliRunner().invoke(main, ["classify", str(path), "--sparse-probe", "0"])
    assert r.exit_code == 2

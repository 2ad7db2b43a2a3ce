"""Sets with known factors (vsc_cli/data/synthetic.py, `vsc synth`) and the scores against them
(vsc_cli/evaluation/truth.py, `vsc sparsity --truth`), each against a plain reference."""
import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.data.synthetic import manifolds, sparse_linear
from vsc_cli.evaluation.truth import abs_correlation, linear_sum_assignment, truth_scores


def brute_force_min(cost):
    """The least total cost of assigning each row of the smaller side to its own column, by trying every one."""
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return brute_force_min(cost.T)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 6), (6, 4), (5, 5), (2, 6)])
def test_the_assignment_is_the_cheapest_one(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.random(shape)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == len(cols) == min(shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(brute_force_min(cost), abs=1e-12)


def test_the_assignment_of_ties_and_negative_costs():
    cost = -np.eye(4)[[2, 0, 3, 1]]  # a permutation: the one assignment of cost -4
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].sum() == -4 and cols.tolist() == [2, 0, 3, 1]
    rows, cols = linear_sum_assignment(np.zeros((3, 5)))  # all ties: any full assignment
    assert len(set(cols.tolist())) == 3


def test_abs_correlation_against_numpy_and_zero_for_a_constant_element():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
    a[:, 1] = 2.0  # a dead element
    got = abs_correlation(a, b)
    for j in range(4):
        for k in range(3):
            want = 0.0 if j == 1 else abs(np.corrcoef(a[:, j], b[:, k])[0, 1])
            assert got[j, k] == pytest.approx(want, abs=1e-12)


def test_a_code_that_is_the_factors_scores_perfectly_and_a_random_one_does_not():
    data = sparse_linear(images=400, factors=6, active=2, side=4, seed=1)
    s = data["factors"]
    perm = [3, 0, 5, 1, 4, 2]
    codes = np.zeros((400, 9))  # the factors, permuted, rescaled and sign-flipped, beside three dead elements
    codes[:, :6] = s[:, perm] * np.array([2.0, -1.0, 0.5, 3.0, -2.0, 1.0])
    r = truth_scores(codes, codes != 0, s)
    assert r["truth_mcc"] == pytest.approx(1.0) and r["truth_recovered_09"] == 6
    assert r["truth_support_f1"] == pytest.approx(1.0) and r["truth_l0_error"] == 0
    noise = np.random.default_rng(2).standard_normal((400, 9))
    r = truth_scores(noise, noise > 1.0, s)
    assert r["truth_mcc"] < 0.3 and r["truth_recovered_07"] == 0 and r["truth_support_f1"] < 0.5


def test_a_code_that_splits_signed_factors_into_halves_scores_high_on_the_halves_only():
    data = sparse_linear(images=2000, factors=6, active=2, side=4, seed=1)  # signed N(0, 1) values
    s = data["factors"]
    halves = np.concatenate([np.maximum(s, 0), np.maximum(-s, 0)], axis=1)  # 12 one-signed elements
    r = truth_scores(halves[:, ::-1] * 3.0, halves[:, ::-1] != 0, s)
    assert r["truth_halves"] == 12 and r["truth_halves_mcc"] == pytest.approx(1.0)
    assert r["truth_halves_recovered_09"] == 12
    # against the signed factors each half correlates ~0.6 (by hand: cov(s, max(s, 0)) over the set's images)
    a, b = s[:, 0], np.maximum(s[:, 0], 0)
    assert r["truth_matched_corr"][0] == pytest.approx(abs(np.corrcoef(a, b)[0, 1]), abs=0.1)
    assert r["truth_mcc"] < 0.9 and r["truth_recovered_09"] == 0
    # the factors themselves: 1 on the factors, and each half matched to one signed element scores below 1
    r = truth_scores(s, s != 0, s)
    assert r["truth_mcc"] == pytest.approx(1.0) and r["truth_halves_recovered_09"] < 12
    # non-negative factors have no halves to score
    assert "truth_halves_mcc" not in truth_scores(np.abs(s), s != 0, np.abs(s))


def scores_loop(codes, active, factors):
    """Support F1 and the L0 error by sets, through the best matching found by trying every one."""
    corr = abs_correlation(codes, factors)
    J, K = corr.shape
    best = max(itertools.permutations(range(J), K), key=lambda p: sum(corr[p[k], k] for k in range(K)))
    f1, l0 = [], []
    for i in range(len(codes)):
        true = {k for k in range(K) if factors[i, k] != 0}
        pred = {k for k in range(K) if active[i, best[k]]}
        f1.append(1.0 if not true and not pred else 2 * len(true & pred) / (len(true) + len(pred)))
        l0.append(abs(int(active[i].sum()) - len(true)))
    return float(np.mean(f1)), float(np.mean(l0)), sum(corr[best[k], k] for k in range(K)) / K


def test_support_f1_and_l0_error_against_sets():
    factors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    codes = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 5.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rng = np.random.default_rng(3)
    cases = [(codes, factors)] + [(rng.standard_normal((30, 5)) * (rng.random((30, 5)) < 0.4),
                                   rng.standard_normal((30, 3)) * (rng.random((30, 3)) < 0.3)) for _ in range(5)]
    for c, f in cases:
        r = truth_scores(c, c != 0, f)
        f1, l0, mcc = scores_loop(c, c != 0, f)
        assert r["truth_support_f1"] == pytest.approx(f1) and r["truth_l0_error"] == pytest.approx(l0)
        assert r["truth_mcc"] == pytest.approx(mcc)
    # the first by hand: the best matching pairs element 0 with factor 1 (0.74) and element 1 with factor 0 (0.47),
    # not element 0 with factor 0 (1.0) and element 1 with factor 1 (0.17); image 1 has 2 active elements, 1 factor
    assert scores_loop(codes, codes != 0, factors)[1] == pytest.approx(0.5)


def test_the_sparse_linear_set_is_what_it_says():
    a, b = sparse_linear(images=300, factors=20, active=3, seed=5), sparse_linear(images=300, factors=20, active=3,
                                                                                 seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # deterministic from its seed
    s, D, x = a["factors"], a["dictionary"], a["images"].reshape(300, -1)
    assert ((s != 0).sum(1) == 3).all() and np.allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert x.min() == 0.0 and x.max() == pytest.approx(1.0) and x.dtype == np.float32
    # without noise x is affine in s (D s, then one map into [0, 1]): least squares on [s, 1] leaves nothing
    def residual(d):
        s, x = d["factors"].astype(np.float64), d["images"].reshape(len(d["factors"]), -1).astype(np.float64)
        design = np.hstack([s, np.ones((len(s), 1))])
        return (x - design @ np.linalg.lstsq(design, x, rcond=None)[0]).std() / x.std()

    assert residual(sparse_linear(images=300, factors=20, active=3, noise=0.0, seed=5)) < 1e-5
    assert residual(a) > 0.01  # the default's pixel noise
    assert (sparse_linear(images=50, values="nonnegative")["factors"] >= 0).all()


def test_the_manifolds_switch_on_their_class_factors_only():
    d = manifolds(images=200, classes=4, per_class=3, side=8, seed=0)
    s, y = d["factors"], d["labels"]
    for i in range(200):
        assert set(np.flatnonzero(s[i]).tolist()) <= set(range(3 * y[i], 3 * y[i] + 3))
    assert d["images"].shape == (200, 8, 8) and 0 < d["images"].min() and d["images"].max() < 1


def test_synth_train_and_score_through_the_commands(tmp_path):
    runner = CliRunner()
    x = tmp_path / "x.npz"
    r = runner.invoke(main, ["synth", "sparse-linear", "-o", str(x), "--images", "200", "--factors", "10",
                             "--active", "2", "--side", "6"])
    assert r.exit_code == 0 and "200 images of 6x6, 10 factors, 2.0 on per image" in r.output, r.output
    r = runner.invoke(main, ["synth", "sparse-linear", "-o", str(x)])
    assert r.exit_code == 2 and "exists" in r.output
    r = runner.invoke(main, ["train", "--data", str(x), "--normalise", "01", "--dim", "12", "--hidden", "16",
                             "--iterations", "20", "--batch-size", "20", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--truth", str(x), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["truth_factors"] == 10 and 0 <= out["truth_mcc"] <= 1 and len(out["truth_matched_corr"]) == 10
    # the codes' reconstruction error against the mean training image's, as a user would compute it
    import vsc_cli

    run = vsc_cli.load(tmp_path / "run")
    train, _ = run.dataset("train")  # the run's training images: the training split less its validation split
    assert len(train) == 162 and len(run.dataset("validation")[0]) == 18
    test, _ = vsc_cli.dataset(str(x), "test", normalisation="01")
    recon = run.decode(run.encode(test).code).numpy().astype(np.float64)
    sse = ((test - recon) ** 2).sum((1, 2, 3))
    sse_mean = ((test - train.astype(np.float64).mean(0)) ** 2).sum((1, 2, 3))
    assert out["reconstruction_sse"] == pytest.approx(sse.mean(), rel=1e-4)
    assert out["mean_image_sse"] == pytest.approx(sse_mean.mean(), rel=1e-6)
    assert out["reconstruction_error"] == pytest.approx(sse.mean() / sse_mean.mean(), rel=1e-4)
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0 and "reconstruction error of the codes" in r.output, r.output
    other = tmp_path / "m.npz"
    assert runner.invoke(main, ["synth", "manifolds", "-o", str(other), "--images", "50", "--side", "6"]).exit_code == 0
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--truth", str(other)])
    assert r.exit_code == 1 and "give the file the run was trained on" in r.output

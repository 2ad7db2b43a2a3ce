"""Example-specificity numbers (vsc_cli/evaluation/metrics.py) on hand-made gamma arrays with known answers."""
import itertools

import numpy as np
import pytest
import torch
from vsc_kernels import SpikeSlab

from vsc_cli.evaluation.metrics import conditional_retention, mean_jaccard, specificity


def naive_jaccard(sets, labels):
    """Pair by pair, from the definition |A & B| / |A | B| (1 for two empty sets)."""
    same, diff, every = [], [], []
    for i, k in itertools.combinations(range(len(sets)), 2):
        a, b = sets[i], sets[k]
        j = len(a & b) / len(a | b) if a | b else 1.0
        every.append(j)
        (same if labels[i] == labels[k] else diff).append(j)
    return np.mean(every), np.mean(diff), np.mean(same)


def test_disjoint_classes_known_answer():
    # class 0 uses elements {0, 1}, class 1 uses {2, 3}; 3 images each; 6 dims, 2 never used
    gamma = np.zeros((6, 6))
    gamma[:3, :2] = 0.9
    gamma[3:, 2:4] = 0.9
    labels = np.array([0, 0, 0, 1, 1, 1])
    s = specificity(gamma, labels)
    assert s["jaccard_different_class"] == 0.0
    assert s["jaccard_same_class"] == 1.0
    assert s["jaccard_all"] == pytest.approx(6 / 15)  # 6 same-class pairs of 15
    assert (s["active_mean"], s["active_p5"], s["active_p50"], s["active_p95"]) == (2, 2, 2, 2)
    assert s["dims_used"] == 4 and s["dims_dead"] == 2
    assert s["dims_always_on"] == 0  # each used element is on in half the images


def test_dense_code_is_all_ones():
    gamma = np.full((50, 10), 0.2)
    gamma[:, [1, 4, 7]] = 0.99  # every image uses the same three elements
    s = specificity(gamma, np.arange(50) % 5)
    assert s["jaccard_different_class"] == 1.0 and s["jaccard_same_class"] == 1.0
    assert s["dims_used"] == 3 and s["dims_always_on"] == 3 and s["dims_dead"] == 7


def test_threshold_is_strict_and_empty_sets_are_equal():
    gamma = np.array([[0.5, 0.0], [0.0, 0.0], [0.51, 0.0]])
    s = specificity(gamma, np.array([0, 1, 1]))
    # image 0 and 1 are empty (0.5 is not > 0.5): J = 1; image 2 is {0}: J = 0 with both
    assert s["active_mean"] == pytest.approx(1 / 3)
    assert s["jaccard_all"] == pytest.approx(1 / 3)
    assert s["jaccard_different_class"] == pytest.approx(0.5)  # pairs (0,1): 1, (0,2): 0
    assert s["jaccard_same_class"] == 0.0  # pair (1,2)


@pytest.mark.parametrize("block", [1, 7, 1024])
def test_jaccard_matches_pairwise_definition(block):
    rng = np.random.default_rng(3)
    active = rng.random((40, 12)) < rng.random(12) * 0.5
    labels = rng.integers(0, 3, 40)
    got = mean_jaccard(active, labels, block=block)
    want = naive_jaccard([set(np.flatnonzero(a)) for a in active], labels)
    assert (got["all"], got["different_class"], got["same_class"]) == pytest.approx(want, rel=1e-12)


def test_percentiles_used_and_always_on():
    # image i has its first i elements active, i = 0..99, over 100 dims
    gamma = (np.arange(100)[None, :] < np.arange(100)[:, None]).astype(float)
    s = specificity(gamma)
    assert s["active_mean"] == pytest.approx(49.5)
    assert s["active_p50"] == pytest.approx(49.5)
    assert s["active_p5"] == pytest.approx(4.95) and s["active_p95"] == pytest.approx(94.05)
    # element j is on in images j+1..99, i.e. a fraction (99 - j) / 100
    assert s["dims_used"] == 99  # all but the last (never on)
    assert s["dims_dead"] == 1
    assert s["dims_always_on"] == 5  # j = 0..4: 99%..95%
    assert s["jaccard_different_class"] is None  # no labels


def test_unlabelled_and_subsampled():
    rng = np.random.default_rng(0)
    gamma = rng.random((300, 8))
    s = specificity(gamma, -np.ones(300, np.int64), max_images=100)  # CelebA's labels are -1
    assert s["jaccard_images"] == 100 and s["jaccard_same_class"] is None
    # the subset is a seeded random one: the same each time
    assert s == specificity(gamma, -np.ones(300, np.int64), max_images=100)


class _Decoder(torch.nn.Module):
    """Decodes z to an 'image' whose class is the index of z's largest |element| (mod 2)."""

    def mean(self, z):
        return z.abs()


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = _Decoder()
        self.p = torch.nn.Parameter(torch.zeros(1))


def test_conditional_retention_counts_source_classes():
    # class 0 images activate only element 0, class 1 images only element 1: every conditional
    # sample's largest element is the source's, so a classifier by argmax keeps every class
    gamma = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.0], [0.0, 0.9]])
    labels = np.array([0, 1, 0, 1])

    def predict(images):
        return np.argmax(images, 1)

    assert conditional_retention(_Model(), gamma, labels, predict, samples=20) == 1.0
    # with both elements on in every image, the argmax is a coin flip: about half are kept
    both = np.full((200, 2), 0.9)
    kept = conditional_retention(_Model(), both, np.arange(200) % 2, predict, samples=20)
    assert 0.45 < kept < 0.55


def test_conditional_retention_with_the_datas_own_values():
    """values: each active element takes a value of a training image that uses it. Here element 0's images
    have values -3 and element 1's +0.5: decoded by z.abs(), element 0 always wins a tie-free argmax when both
    are on, which N(0, 1) draws would not guarantee; a value pool is drawn from, never N(0, 1)."""
    from vsc_cli.evaluation.metrics import element_values

    both = np.full((100, 2), 0.9)
    labels = np.zeros(100, np.int64)

    def predict(images):
        return np.argmax(images, 1)

    values = [np.array([-3.0, -3.0]), np.array([0.5])]
    assert conditional_retention(_Model(), both, labels, predict, samples=10, values=values) == 1.0
    assert conditional_retention(_Model(), both, labels, predict, samples=10) < 0.9

    class _Enc(_Model):  # mu = x; gamma = 1 where x > 0.5, e^-5 elsewhere (log gamma = min(v, 0))
        def posterior(self, x):
            return SpikeSlab(x, x, torch.where(x > 0.5, torch.zeros_like(x), torch.full_like(x, -5.0)))

    x = np.array([[0.9, 0.1], [0.7, 0.8], [0.2, 0.6]], np.float32)
    pools = element_values(_Enc(), x, batch=2)
    np.testing.assert_allclose(pools[0], [0.9, 0.7])
    np.testing.assert_allclose(pools[1], [0.8, 0.6])

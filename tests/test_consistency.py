"""The consistency score (vsc_cli/evaluation/consistency.py, `vsc sparsity --consistency`) against a loop, and its
two ends: a linear decoder (every element does the same everywhere: 1) and elements it must skip."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsc_cli.cli import main
from vsc_cli.evaluation.consistency import consistency, pair_cosines


class Stub(torch.nn.Module):
    def __init__(self, decode):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.decoder = type("D", (), {"mean": staticmethod(decode)})()


def codes_and_active(n=60, J=6, seed=0):
    rng = np.random.default_rng(seed)
    active = rng.random((n, J)) < 0.5
    active[:, 5] = False  # never on: skipped
    active[0, 4], active[1:, 4] = True, False  # on in one image of 60 (1.7% >= 1%) but no pair: skipped
    return rng.standard_normal((n, J)) * active, active


def test_a_linear_decoder_is_consistent_everywhere():
    W = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    codes, active = codes_and_active()
    r = consistency(Stub(lambda z: z @ W), codes, active)
    assert r["consistency_elements"] == 4 and set(map(int, r["consistency_per_element"])) == {0, 1, 2, 3}
    assert r["consistency"] == pytest.approx(1.0)


def test_the_score_matches_a_loop():
    W = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    decode = lambda z: torch.tanh(z @ W) * (1 + z[:, :1] ** 2)  # noqa: E731 (an effect that depends on the code)
    codes, active = codes_and_active(seed=2)
    r = consistency(Stub(decode), codes, active, max_images=1000)
    for j in range(4):
        on = np.flatnonzero(active[:, j])
        z = torch.from_numpy(codes[on])
        step = torch.zeros_like(z)
        step[:, j] = float(np.std(codes[on, j]))
        ch = (decode(z + step) - decode(z)).numpy()
        cos = [float(ch[a] @ ch[b] / np.linalg.norm(ch[a]) / np.linalg.norm(ch[b]))
               for a in range(len(on)) for b in range(a + 1, len(on))]
        assert r["consistency_per_element"][str(j)] == pytest.approx(float(np.median(cos)), abs=1e-12)
    assert r["consistency"] < 1.0


def test_pair_cosines_of_a_zero_change_are_zero():
    assert pair_cosines(np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])).tolist() == [0.0, 1.0, 0.0]


def test_the_command_on_a_run(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (100, 6, 6), dtype=np.uint8))
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--data", str(tmp_path / "x.npy"), "--dim", "6", "--hidden", "8", "--alpha",
                             "0.9", "--iterations", "10", "--batch-size", "20", "--out", str(tmp_path / "run"),
                             "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["sparsity", str(tmp_path / "run"), "--consistency", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["consistency_elements"] == len(out["consistency_per_element"])
    assert out["consistency"] is None or -1 <= out["consistency"] <= 1
    png = tmp_path / "c.png"
    r = runner.invoke(main, ["figure", "consistency", str(tmp_path / "run"), "-o", str(png), "--elements", "2",
                             "--count", "3", "--save-arrays"])
    if out["consistency"] is None:  # no element used by 1% of the images: said in one line
        assert r.exit_code == 1 and "nothing to draw" in r.output
        return
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "c.npz") as f:
        elements, scores, images, changes = f["elements"], f["scores"], f["images"], f["changes"]
    per = out["consistency_per_element"]
    best = list(per)[:2]  # the figure's first rows are the most consistent elements, with their scores
    assert [str(j) for j in elements[:len(best)]] == best
    assert scores[:len(best)] == pytest.approx([per[j] for j in best])
    assert images.shape == (len(elements), 3) and changes.shape[:2] == (len(elements), 3)

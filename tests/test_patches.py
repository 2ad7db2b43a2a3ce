"""`vsc synth patches` (vsc_cli/data/synthetic.py): natural-image patches cut from photographs, against a plain
patch-by-patch reference; deterministic from its seed; ZCA's whitened spectrum; the command's errors."""
import builtins

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsc_cli.cli import main
from vsc_cli.common.errors import VscError
from vsc_cli.data.synthetic import ZCA_EPS, grey, patches


def photos(seed=0):
    rng = np.random.default_rng(seed)
    return [("a.png", rng.random((20, 30))), ("b.png", rng.random((16, 16))), ("c.png", rng.random((40, 13)))]


def test_each_patch_is_its_photographs_window_less_its_mean_then_one_affine_map():
    src = photos()
    out = patches(images=300, side=5, photos=src, seed=3)
    x, pos = out["images"].astype(np.float64), out["positions"]
    assert x.shape == (300, 5, 5) and x.min() == 0.0 and x.max() == pytest.approx(1.0)
    assert (out["labels"] == pos[:, 0]).all() and set(pos[:, 0]) == {0, 1, 2}
    lo = -float(out["offset"]) / float(out["scale"])
    for i in range(300):
        p, r, c = pos[i]
        photo = src[p][1]
        assert 0 <= r <= photo.shape[0] - 5 and 0 <= c <= photo.shape[1] - 5
        window = photo[r:r + 5, c:c + 5]
        want = (window - window.mean() - lo) * float(out["scale"])
        np.testing.assert_allclose(x[i], want, atol=1e-6)
    # 0 (a patch's mean) maps to offset
    assert float(out["offset"]) == pytest.approx(-lo * float(out["scale"]))


def test_the_same_seed_gives_the_same_set_and_another_seed_another():
    a, b = patches(images=200, side=4, photos=photos(), seed=1), patches(images=200, side=4, photos=photos(), seed=1)
    for key in ("images", "positions", "labels"):
        assert np.array_equal(a[key], b[key])
    c = patches(images=200, side=4, photos=photos(), seed=2)
    assert not np.array_equal(a["positions"], c["positions"])


def test_zca_flattens_the_spectrum_of_the_patches():
    src = photos(1)
    plain = patches(images=4000, side=4, photos=src, seed=0)
    white = patches(images=4000, side=4, photos=src, seed=0, whiten="zca")
    assert np.array_equal(plain["positions"], white["positions"])
    centred = (plain["images"].reshape(4000, -1).astype(np.float64) - float(plain["offset"])) / float(plain["scale"])
    lam = np.clip(np.linalg.eigvalsh(centred.T @ centred / 4000), 0, None)
    w = (white["images"].reshape(4000, -1).astype(np.float64) - float(white["offset"])) / float(white["scale"])
    got = np.sort(np.linalg.eigvalsh(w.T @ w / 4000))
    np.testing.assert_allclose(got, np.sort(lam / (lam + ZCA_EPS * lam.mean())), atol=1e-4)
    assert got[-1] < 1.0 and got[-5:].min() > 0.9  # the strong directions whitened to about 1


def test_grey_is_itu_601_luma():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(grey(rgb)[0], [0.299, 0.587, 0.114, 1.0], atol=1e-12)
    np.testing.assert_allclose(grey(np.array([[0, 51]], dtype=np.uint8)), [[0.0, 0.2]])


def test_the_command_cuts_a_folders_photographs_and_trains_on_them(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "one.png")
    Image.fromarray(rng.integers(0, 256, (25, 25), dtype=np.uint8)).save(folder / "two.jpg")
    (folder / "notes.txt").write_text("not an image")
    runner = CliRunner()
    out = tmp_path / "p.npz"
    r = runner.invoke(main, ["synth", "patches", "-o", str(out), "--from", str(folder), "--images", "500",
                             "--side", "6"])
    assert r.exit_code == 0, r.output
    assert "500 patches of 6x6 from 2 photographs" in r.output
    f = np.load(out)
    assert f["images"].shape == (500, 6, 6) and list(f["photos"]) == ["one.png", "two.jpg"]
    one = grey(np.asarray(Image.open(folder / "one.png")))
    p, row, col = f["positions"][0]
    if p == 0:
        window = one[row:row + 6, col:col + 6]
        lo = -float(f["offset"]) / float(f["scale"])
        np.testing.assert_allclose(f["images"][0], (window - window.mean() - lo) * float(f["scale"]), atol=1e-6)
    r = runner.invoke(main, ["train", "--data", str(out), "--normalise", "01", "--dim", "8", "--decoder", "linear",
                             "--iterations", "5", "--batch-size", "50", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, message", [
    (["--from", "missing"], "not a folder"),
    (["--from", "EMPTY"], "no image files"),
    (["--from", "SMALL", "--side", "12"], "smaller than a 12x12 patch"),
])
def test_the_commands_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small" / "s.png")
    args = [str(tmp_path / a.lower()) if a in ("EMPTY", "SMALL", "missing") else a for a in args]
    r = CliRunner().invoke(main, ["synth", "patches", "-o", str(tmp_path / "p.npz"), *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "p.npz").exists()


def test_whiten_and_from_are_for_patches_only(tmp_path):
    r = CliRunner().invoke(main, ["synth", "sparse-linear", "-o", str(tmp_path / "x.npz"), "--whiten", "zca"])
    assert r.exit_code == 2 and "--whiten is for patches" in r.output


def test_without_scikit_image_the_error_says_what_to_do(monkeypatch):
    real = builtins.__import__

    def no_skimage(name, *a, **k):
        if name == "skimage" or name.startswith("skimage."):
            raise ImportError("no skimage")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    with pytest.raises(VscError, match="pip install scikit-image, or give --from FOLDER"):
        patches(images=10)


def test_the_default_photographs_are_scikit_images_ten():
    pytest.importorskip("skimage", reason="scikit-image is an optional extra (pip install scikit-image)")
    from vsc_cli.data.synthetic import SKIMAGE_PHOTOS, read_photos

    got = read_photos()
    assert [name for name, _ in got] == list(SKIMAGE_PHOTOS)
    assert all(p.ndim == 2 and 0 <= p.min() and p.max() <= 1 and min(p.shape) >= 64 for _, p in got)

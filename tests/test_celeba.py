"""The CelebA loader (vsc_cli/data/celeba.py): the face crop, the shared subset, bad sources, `vsc download celeba`,
and CelebA's default network."""
import io
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vsc_cli.cli import main
from vsc_cli.common.errors import VscError
from vsc_cli.data import celeba
from vsc_cli.data.datasets import load_split


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_crop_box_is_a_fraction_of_the_image():
    assert celeba.crop_box(178, 218) == (15, 40, 163, 188)  # the official images: rows 40..188, cols 15..163
    assert celeba.crop_box(89, 109) == (8, 20, 82, 94)  # the half-size subset: the same face square


def test_celeba_subset_loader(shared_data):
    if not (shared_data / "celeba").is_dir():
        pytest.skip("no celeba subset in the shared data")
    x_train, y_train = load_split("celeba", "train", shared_data)
    x_test, y_test = load_split("celeba", "test", shared_data)
    assert x_train.shape == (9000, 3 * 32 * 32) and x_test.shape == (1000, 3 * 32 * 32)
    np.testing.assert_allclose(np.linalg.norm(x_test, axis=1), 1.0, rtol=1e-5)
    assert np.all(y_test == -1)
    # deterministic: the test split is the last 10% by name, preprocessed from the zip's own bytes
    with zipfile.ZipFile(shared_data / "celeba" / "img_align_celeba_subset.zip") as zf:
        raw = zf.read("img_align_celeba/009001.jpg")
        first = celeba.preprocess(raw, "009001.jpg").reshape(-1).astype(np.float32)
        with Image.open(io.BytesIO(raw)) as im:
            assert im.size == (89, 109)
    np.testing.assert_allclose(x_test[0], first / np.linalg.norm(first), rtol=1e-6)
    images = celeba.load_images(shared_data, progress=False)
    assert images.shape == (10000, 3, 32, 32) and images.dtype == np.uint8


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (109, 89, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_celeba_bad_sources(tmp_path):
    folder = tmp_path / "data" / "celeba"
    folder.mkdir(parents=True)
    good = {f"img_align_celeba/00000{i}.jpg": _jpeg(i) for i in range(1, 4)}
    _zip(folder / "img_align_celeba.zip", {**good, "img_align_celeba/000004.jpg": b"\xff\xd8 not really a jpeg"})
    with pytest.raises(VscError, match="entry img_align_celeba/000004.jpg: not a readable image"):
        celeba.load_images(tmp_path / "data", progress=False)
    _zip(folder / "img_align_celeba.zip", {"img_align_celeba/readme.txt": b"no images here"})
    with pytest.raises(VscError, match="no .jpg or .png images inside"):
        celeba.load_images(tmp_path / "data", progress=False)
    (folder / "img_align_celeba.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(VscError, match="not a readable zip"):
        celeba.load_images(tmp_path / "data", progress=False)
    # through the CLI: one line, exit 1, naming the entry
    _zip(folder / "img_align_celeba.zip", {**good, "img_align_celeba/000004.jpg": b"\xff\xd8 broken"})
    result = run("train", "--data", "celeba", "--data-dir", tmp_path / "data", "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 1 and "000004.jpg" in result.output and "Traceback" not in result.output
    # a good zip: 4 images, 3 train and 1 test (the last by name), cached for the next load
    _zip(folder / "img_align_celeba.zip", {**good, "img_align_celeba/000004.jpg": _jpeg(4)})
    x, _ = load_split("celeba", "train", tmp_path / "data")
    t, _ = load_split("celeba", "test", tmp_path / "data")
    assert x.shape == (3, 3072) and t.shape == (1, 3072)
    assert list(celeba.cache_dir().glob("celeba-32px-*.npy"))  # tests point VSC_CACHE_DIR at a temporary folder
    assert sorted(p.name for p in folder.iterdir()) == ["img_align_celeba.zip"]  # nothing written beside it


def test_download_celeba_from_a_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _zip(src / "img_align_celeba.zip", {"img_align_celeba/000001.jpg": _jpeg(1)})
    result = run("download", "celeba", "--from", src, "--data-dir", tmp_path / "cache")
    assert result.exit_code == 0 and "1 images" in result.output, result.output
    assert (tmp_path / "cache" / "celeba" / "img_align_celeba.zip").is_file()
    result = run("download", "celeba", "--data-dir", tmp_path / "empty")
    assert result.exit_code == 1 and "vsc download celeba --from" in result.output


def test_celeba_defaults_to_the_two_layer_network(monkeypatch, tmp_path):
    seen = {}

    def fake_train(cfg, out, **kw):
        seen["cfg"] = cfg
        return {"test_elbo": 0.0, "test_recon": 0.0, "test_kl_slab": 0.0, "test_kl_spike": 0.0,
                "test_sparsity": 0.1, "seconds_per_1000_iterations": None}

    monkeypatch.setattr("vsc_cli.trainers.train.train", fake_train)
    assert run("train", "--data", "celeba", "--paper", "--out", tmp_path / "a").exit_code == 0
    assert seen["cfg"].hidden == (2000, 2000) and seen["cfg"].lr == 1e-4  # at 1e-3 even the VAE collapses
    assert (seen["cfg"].network, seen["cfg"].image_size) == ("mlp", None)  # the paper's MLP at 32x32
    assert run("train", "--data", "celeba", "--network", "mlp", "--out", tmp_path / "m").exit_code == 0
    assert (seen["cfg"].hidden, seen["cfg"].lr, seen["cfg"].image_size) == ((2000, 2000), 1e-4, None)
    assert run("train", "--data", "celeba", "--out", tmp_path / "d").exit_code == 0  # the default: conv at 64x64
    assert (seen["cfg"].network, seen["cfg"].image_size, seen["cfg"].lr) == ("conv", 64, 1e-3)
    assert seen["cfg"].logvar_init == "data"  # the conv network's default start of the decoder's variance
    assert run("train", "--data", "celeba", "--image-size", "32", "--out", tmp_path / "e").exit_code == 0
    assert (seen["cfg"].network, seen["cfg"].image_size) == ("conv", 32)
    assert run("train", "--data", "fmnist", "--out", tmp_path / "b").exit_code == 0
    assert seen["cfg"].hidden == (400,) and seen["cfg"].lr == 1e-3
    assert run("train", "--data", "celeba", "--network", "mlp", "--hidden", "300", "--lr", "0.002", "--out",
               tmp_path / "c").exit_code == 0
    assert seen["cfg"].hidden == (300,) and seen["cfg"].lr == 0.002
    # the MLP's own setting with the conv network: one line naming the network it belongs to
    r = run("train", "--data", "celeba", "--hidden", "300", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "--hidden is a setting of MLP network (--network mlp)" in r.output

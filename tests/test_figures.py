"""Figures of the codes (issue 5) and the CelebA loader."""
import io
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vsc_cli.data import celeba
from vsc_cli.evaluation import figures
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.data.datasets import load_split
from vsc_cli.common.errors import VscError
from vsc_cli.trainers.train import train

DPI = 50
TILE, TITLE = figures.CELL * DPI, figures.TITLE * DPI


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(data="fmnist", dim=16, alpha=0.2, iterations=60, batch_size=50, train_size=1000,
                      test_size=100, log_every=20, backend="torch")
    train(cfg, out, data_dir=shared_data, progress=False)
    return out


def png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


# kind, extra arguments, expected (width, height) in image tiles (+ the title band in height)
CASES = [
    ("codes", ["--count", 3], (6, 3)),
    ("alter", ["--index", 2, "--elements", 2, "--steps", 4], (5, 3)),
    ("interpolate", ["--index", "3,8", "--elements", 2, "--steps", 4], (5, 5)),
    ("prior", ["--count", 9], (3, 3)),
    ("conditional", ["--index", "0,1", "--count", 4], (6, 2)),
]


@pytest.mark.parametrize("kind,args,tiles", CASES, ids=[c[0] for c in CASES])
def test_each_figure_writes_a_png_of_the_expected_size(trained_run, shared_data, tmp_path, kind, args, tiles):
    out = tmp_path / f"{kind}.png"
    result = run("figure", kind, trained_run, "-o", out, "--dpi", DPI, "--data-dir", shared_data, "--save-arrays",
                 *args)
    assert result.exit_code == 0, result.output
    pixels = png(out)
    assert pixels.shape[:2] == (round(tiles[1] * TILE + TITLE), round(tiles[0] * TILE))
    # not blank: below the title band, many grey levels, and no tile one flat colour (black tiles fail)
    body = pixels[round(TITLE):].astype(np.float64)
    assert len(np.unique(body.reshape(-1, 3), axis=0)) > 50 and body.std() > 20
    tile = round(TILE)
    stds = [body[r:r + tile, c:c + tile].std() for r in range(0, body.shape[0] - tile + 1, tile)
            for c in range(0, body.shape[1] - tile + 1, tile)]
    assert len(stds) == tiles[0] * tiles[1] and min(stds) > 5, stds
    assert out.with_suffix(".npz").is_file()
    assert not list(tmp_path.glob(".*partial*"))


def test_conditional_samples_are_zero_outside_the_active_dimensions(trained_run, shared_data, tmp_path):
    out = tmp_path / "cond.png"
    loaded = figures.load(trained_run, shared_data)
    # a threshold inside the range of the images' gammas, so that each has active and inactive dimensions
    threshold = min(float(np.quantile(figures.encode(loaded.model, loaded.x[:3])["gamma"], 0.25)), 0.999)
    result = run("figure", "conditional", trained_run, "-o", out, "--index", "0,1,2", "--count", 6,
                 "--dpi", DPI, "--data-dir", shared_data, "--save-arrays", "--threshold", threshold)
    assert result.exit_code == 0, result.output
    arrays = np.load(out.with_suffix(".npz"))
    for gamma, z in zip(arrays["gamma"], arrays["codes"]):
        active = gamma > threshold
        assert active.any() and not active.all()
        assert np.all(z[:, ~active] == 0.0)  # exactly zero
        assert np.all(z[:, active] != 0.0)  # drawn from N(0, 1): non-zero with probability 1
    rng = np.random.default_rng(0)
    gamma = np.array([0.9, 0.1, 0.5, 0.51, 0.0])
    z = figures.conditional_codes(gamma, 1000, rng)
    assert np.all(z[:, [1, 2, 4]] == 0) and abs(z[:, 0].std() - 1) < 0.1 and abs(z[:, 3].mean()) < 0.1


def test_altering_changes_only_that_element(trained_run, shared_data, tmp_path):
    out = tmp_path / "alter.png"
    result = run("figure", "alter", trained_run, "-o", out, "--index", 5, "--elements", 3, "--steps", 5,
                 "--range", 2, "--dpi", DPI, "--data-dir", shared_data, "--save-arrays")
    assert result.exit_code == 0, result.output
    a = np.load(out.with_suffix(".npz"))
    np.testing.assert_array_equal(a["values"], np.linspace(-2, 2, 5).astype(np.float32))
    for j, codes in zip(a["elements"], a["altered_codes"]):
        assert a["gamma"][j] > 0.5  # an active element (gamma > --threshold)
        changed = np.flatnonzero((codes != a["code"][None, :]).any(0))
        assert set(changed) <= {j} and np.array_equal(codes[:, j], a["values"])
    # the decoder saw exactly these codes: decoding them again gives the stored images
    loaded = figures.load(trained_run, shared_data, need_data=False)
    again = figures.decode(loaded.model, a["altered_codes"][0], loaded.shape)
    np.testing.assert_allclose(again, a["decoded"][0][1:], rtol=1e-5, atol=1e-6)  # batch size changes rounding


def test_code_arrays():
    code = np.array([0.5, -2.0, 1.0, 3.0, 0.1], np.float32)
    gamma = np.array([0.9, 0.8, 0.2, 0.1, 0.7])
    assert list(figures.top_elements(code, gamma, 2)) == [1, 0]  # |code| order among the active ones
    z = figures.interpolation_codes(code, code[::-1].copy(), 1, 5)
    assert z[0, 1] == code[1] and z[-1, 1] == code[3] and np.all(z[:, [0, 2, 3, 4]] == code[[0, 2, 3, 4]])
    from vsc_cli.models.vae import VAE

    prior = VAE(TrainConfig(dim=50, alpha=0.2, hidden=(4,)), 6).sample_prior(4000, torch.Generator().manual_seed(1))
    assert abs(float((prior != 0).double().mean()) - 0.2) < 0.01 and abs(float(prior[prior != 0].std()) - 1) < 0.05
    vae = VAE(TrainConfig(model="vae", dim=50, hidden=(4,)), 6).sample_prior(4000, torch.Generator().manual_seed(1))
    assert bool((vae != 0).all()) and abs(float(vae.std()) - 1) < 0.05  # the VAE's N(0, 1)


def test_figure_bad_inputs(trained_run, shared_data, tmp_path):
    cases = [
        (["interpolate", trained_run, "-o", tmp_path / "a.png", "--index", "3,3"], 2, "two different"),
        (["alter", trained_run, "-o", tmp_path / "a.png", "--index", "1,2"], 2, "one --index"),
        (["codes", trained_run, "-o", tmp_path / "no" / "a.png"], 1, "does not exist"),
        (["codes", trained_run, "-o", tmp_path / "a.png", "--index", 100000, "--data-dir", shared_data], 1,
         "outside the"),
        (["codes", trained_run, "-o", tmp_path / "a.png", "--index", "x"], 2, "--index"),
    ]
    for args, code, fragment in cases:
        result = run("figure", *args)
        assert result.exit_code == code, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "a.png").exists()


# ---------------------------------------------------------------------------------------- CelebA
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
    assert run("train", "--data", "celeba", "--out", tmp_path / "a").exit_code == 0
    assert seen["cfg"].hidden == (2000, 2000) and seen["cfg"].lr == 1e-4  # at 1e-3 even the VAE collapses
    assert run("train", "--data", "fmnist", "--out", tmp_path / "b").exit_code == 0
    assert seen["cfg"].hidden == (400,) and seen["cfg"].lr == 1e-3
    assert run("train", "--data", "celeba", "--hidden", "300", "--lr", "0.002", "--out", tmp_path / "c").exit_code == 0
    assert seen["cfg"].hidden == (300,) and seen["cfg"].lr == 0.002

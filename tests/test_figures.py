"""Figures of the codes (vsc figure)."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vsc_cli.evaluation import figures
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
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

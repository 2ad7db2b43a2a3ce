"""Users' own data (`--data PATH`): folders of images, .npy/.npz arrays, HDF5; streamed in blocks."""
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from test_cli import assert_one_line_error, run
from vsc_cli.data import sources
from vsc_cli.data.datasets import normalise
from vsc_cli.common.errors import VscError
from vsc_cli.data.sources import open_images, open_own, own_split

TINY = ["--dim", "4", "--hidden", "16", "--batch-size", "8", "--iterations", "3", "--log-every", "1",
        "--checkpoint-every", "2", "--quiet"]


def images(n=40, h=12, w=10, c=None, seed=0):
    """uint8 images (n, h, w) or (n, h, w, c) with enough structure that no two are alike."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def reference_rows(x_nhwc_or_nhw, how="unit"):
    """The obvious preprocessing: channels first, then the built-in sets' normalisation."""
    x = x_nhwc_or_nhw
    x = x[:, None] if x.ndim == 3 else np.moveaxis(x, 3, 1)
    return normalise(x, how)


def write_folder(root, x, labels=None, fmt="png"):
    """One file per image, in class sub-folders when labels are given; returns paths in sorted order."""
    paths = []
    for i, img in enumerate(x):
        folder = root / f"class_{labels[i]}" if labels is not None else root
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"img_{i:04d}.{fmt}"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("layout", ["nhw", "nhwc1", "nhwc3", "nchw3", "nhwc4"])
def test_npy_layouts_give_the_reference_rows(tmp_path, layout):
    base = images(30, c=3)
    if layout == "nhw":
        stored, expect = base[..., 0], reference_rows(base[..., 0])
    elif layout == "nhwc1":
        stored, expect = base[..., :1], reference_rows(base[..., :1])
    elif layout == "nhwc3":
        stored, expect = base, reference_rows(base)
    elif layout == "nchw3":
        stored, expect = np.moveaxis(base, 3, 1).copy(), reference_rows(base)
    else:  # RGBA: the alpha channel is dropped
        stored = np.concatenate([base, np.full(base.shape[:3] + (1,), 7, np.uint8)], axis=3)
        expect = reference_rows(base)
    np.save(tmp_path / "x.npy", stored)
    src = open_own(tmp_path / "x.npy", None, "unit")
    np.testing.assert_array_equal(src[np.arange(len(src))], expect)
    assert src.shape == ((1,) if layout in ("nhw", "nhwc1") else (3,)) + (12, 10)
    idx = np.array([17, 3, 3, 29, 0])  # unsorted, repeated: the rows asked for, in that order
    np.testing.assert_array_equal(src[idx], expect[idx])
    assert (src.labels == -1).all()


def test_float_and_uint16_arrays_scale_like_uint8(tmp_path):
    x = images(20)
    expect = reference_rows(x, "01")
    np.save(tmp_path / "f.npy", x.astype(np.float32) / 255)
    np.save(tmp_path / "u16.npy", x.astype(np.uint16) * 257)
    for name in ("f.npy", "u16.npy"):
        np.testing.assert_allclose(open_own(tmp_path / name, None, "01")[:], expect, atol=1e-6)


def test_npz_stored_and_compressed_and_hdf5_with_labels(tmp_path):
    x, y = images(50), np.arange(50) % 7
    expect = reference_rows(x)
    np.savez(tmp_path / "a.npz", images=x, labels=y)
    np.savez_compressed(tmp_path / "b.npz", x=x, y=y)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["images"], f["labels"] = x, y
    for name in ("a.npz", "b.npz", "c.h5"):
        src = open_own(tmp_path / name, None, "unit")
        np.testing.assert_array_equal(src[:], expect, err_msg=name)
        np.testing.assert_array_equal(src.labels, y)
    assert isinstance(open_own(tmp_path / "a.npz", None, "unit"), sources.NpyFile)  # streamed, not loaded


def test_every_tenth_image_is_a_test_image(tmp_path):
    x = images(35)
    np.save(tmp_path / "x.npy", x)
    train = open_images(str(tmp_path / "x.npy"), "train")
    test = open_images(str(tmp_path / "x.npy"), "test")
    np.testing.assert_array_equal(own_split(35, "test"), [9, 19, 29])
    np.testing.assert_array_equal(test[:], reference_rows(x[[9, 19, 29]]))
    assert len(train) == 32 and len(test) == 3
    np.testing.assert_array_equal(train[:], reference_rows(np.delete(x, [9, 19, 29], axis=0)))


def test_resize_to_image_size(tmp_path):
    x = images(10, 16, 8)
    np.save(tmp_path / "x.npy", x)
    src = open_own(tmp_path / "x.npy", 6, "01")
    assert src.shape == (1, 6, 6) and src[:].shape == (10, 36)
    const = np.full((3, 16, 8), 128, np.uint8)  # a flat image stays flat through the resize
    np.save(tmp_path / "c.npy", const)
    np.testing.assert_allclose(open_own(tmp_path / "c.npy", 6, "01")[:], 128 / 255, rtol=1e-6)


@pytest.mark.parametrize("make,fragment", [
    (lambda p: np.save(p / "d.npy", np.zeros((4, 5), np.uint8)), r"expected \(N, H, W\)"),
    (lambda p: np.save(p / "d.npy", np.array([{"a": 1}] * 3, dtype=object)), "object arrays"),
    (lambda p: (p / "d.npy").write_bytes(b"not numpy"), "not a readable .npy"),
    (lambda p: np.savez(p / "d.npz", other=np.zeros(3)), "no 'images'"),
    (lambda p: h5py.File(p / "d.h5", "w").close(), "no 'images' dataset"),
    (lambda p: (p / "d.txt").write_text("x"), "not a folder, .npy"),
])
def test_bad_array_inputs_are_refused_by_name(tmp_path, make, fragment):
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir() if p.name.startswith("d."))
    with pytest.raises(VscError, match=fragment):
        open_own(path, None, "unit")


def test_truncated_npy_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", images(20))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[:-100])
    with pytest.raises(VscError, match="truncated"):
        open_own(tmp_path / "x.npy", None, "unit")


# ------------------------------------------------------------------------------------- folders
def test_folder_with_class_subfolders(tmp_path):
    x, y = images(30, 12, 10), np.arange(30) % 3
    write_folder(tmp_path / "imgs", x, y)
    (tmp_path / "imgs" / "class_0" / "notes.txt").write_text("not an image")  # skipped, counted
    write_folder(tmp_path / "imgs" / ".ipynb_checkpoints", images(2))  # hidden folders are not classes
    (tmp_path / "imgs" / "class_1" / "loop").symlink_to(tmp_path / "imgs")  # a symlink loop is walked once
    src = open_own(tmp_path / "imgs", None, "unit")
    order = np.argsort([f"class_{y[i]}/img_{i:04d}" for i in range(30)], kind="stable")  # sorted-path order
    np.testing.assert_array_equal(src[:], reference_rows(x[order]))
    np.testing.assert_array_equal(src.labels, y[order])
    assert src.classes == ["class_0", "class_1", "class_2"] and src.skipped == 1 and src.shape == (1, 12, 10)


def test_folder_mixed_modes_and_sizes(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    Image.fromarray(images(1, 12, 10)[0]).save(root / "a.png")  # grey
    Image.fromarray(images(1, 20, 16, 3)[0]).save(root / "b.jpg", quality=95)  # RGB, another size
    with pytest.raises(VscError, match=r"b.jpg is 16x20 but .*a.png is 10x12.*--image-size"):
        open_own(root, None, "unit")
    src = open_own(root, 8, "01")  # resized, and RGB because one image is
    assert src.shape == (3, 8, 8) and src[:].shape == (2, 192)
    grey = src[[0]].reshape(3, 8, 8)
    np.testing.assert_array_equal(grey[0], grey[1])  # the grey image is repeated over R, G, B


def test_folder_corrupt_and_loose_files_are_named(tmp_path):
    root = tmp_path / "bad"
    write_folder(root, images(5), np.zeros(5, int))
    (root / "class_0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(VscError, match=r"broken.png: not a readable image"):
        open_own(root, None, "unit")
    (root / "class_0" / "broken.png").unlink()
    Image.fromarray(images(1)[0]).save(root / "loose.png")
    with pytest.raises(VscError, match=r"loose.png: an image directly in"):
        open_own(root, None, "unit")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("hi")
    with pytest.raises(VscError, match="no images"):
        open_own(empty, None, "unit")


# ------------------------------------------------------------------------------------- training
def test_folder_npy_and_hdf5_train_and_encode(tmp_path):
    x, y = images(120, 12, 10), np.arange(120) % 4
    write_folder(tmp_path / "folder", x, y)
    np.save(tmp_path / "x.npy", x)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["images"], f["labels"] = x, y
    for data in ("folder", "x.npy", "x.h5"):
        out = tmp_path / f"run-{data}"
        result = run("train", "--data", tmp_path / data, "--out", out, *TINY)
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert np.isfinite(metrics["test_elbo"]) and metrics["iterations"] == 3
    codes = tmp_path / "codes.h5"
    result = run("encode", tmp_path / "run-folder", "-o", codes, "--quiet")
    assert result.exit_code == 0, result.output
    with h5py.File(codes) as f:
        # 120 images: 12 test; of the 108 training images a tenth (11) is the validation split
        assert f["train/code"].shape == (97, 4) and f["test/code"].shape == (12, 4)
        order = np.argsort([f"class_{y[i]}/img_{i:04d}" for i in range(120)], kind="stable")
        np.testing.assert_array_equal(f["test/labels"][:], y[order][own_split(120, "test")])
    result = run("figure", "codes", tmp_path / "run-folder", "-o", tmp_path / "fig.png", "--count", "2")
    assert result.exit_code == 0, result.output


def test_corrupt_image_met_while_training_is_named(tmp_path):
    root = tmp_path / "imgs"
    paths = write_folder(root, images(40), np.arange(40) % 2)
    raw = paths[5].read_bytes()
    paths[5].write_bytes(raw[:60])  # the header still reads; the pixels do not
    result = run("train", "--data", root, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(result, 1, paths[5].name, "not a readable image")


def test_data_argument_errors(tmp_path):
    result = run("train", "--data", tmp_path / "missing.npy", "--quiet")
    assert result.exit_code == 2 and "neither a dataset" in result.output
    result = run("train", "--data", "fmnist", "--image-size", "16", "--quiet")
    assert result.exit_code == 2 and "--image-size is for CelebA and your own data" in result.output
    np.save(tmp_path / "few.npy", images(8))
    result = run("train", "--data", tmp_path / "few.npy", "--out", tmp_path / "r", *TINY)
    assert_one_line_error(result, 1, "no test images")


def test_training_never_loads_more_than_the_cap(tmp_path, monkeypatch):
    """A dataset 20 times larger than what may be loaded at once trains, evaluates and encodes."""
    n = 20_000
    x = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.uint8, (n, 12, 10))
    x[:] = images(n, 12, 10)
    x.flush()
    del x
    monkeypatch.setattr(sources, "LOAD_CAP_ROWS", n // 20)
    seen = []
    real = sources.NpyFile._read

    def spy(self, idx):
        seen.append(len(idx))
        return real(self, idx)

    monkeypatch.setattr(sources.NpyFile, "_read", spy)
    out = tmp_path / "run"
    result = run("train", "--data", tmp_path / "big.npy", "--out", out, "--logvar-init", "data", *TINY)
    assert result.exit_code == 0, result.output
    result = run("encode", out, "-o", tmp_path / "codes.h5", "--quiet")
    assert result.exit_code == 0, result.output
    assert max(seen) <= n // 20 and sum(seen) >= n  # everything was read, never more than the cap at once
    with pytest.raises(VscError, match="more than the cap"):
        open_own(tmp_path / "big.npy", None, "unit")[:n // 20 + 1]


def test_review_edge_cases(tmp_path):
    """16-bit PNGs keep their range, floats outside [0, 1] and ambiguous layouts are refused, empty reads work."""
    x16 = (images(12, 8, 6).astype(np.uint16) * 257)  # 16-bit grey, full range
    root = tmp_path / "deep"
    root.mkdir()
    for i, img in enumerate(x16):
        Image.fromarray(img).save(root / f"{i:02d}.png")  # Pillow writes a 16-bit PNG
    np.save(tmp_path / "x16.npy", x16)
    folder, array = open_own(root, None, "01"), open_own(tmp_path / "x16.npy", None, "01")
    np.testing.assert_allclose(folder[:], array[:], atol=1e-6)
    assert folder[:].max() > 0.9  # not clipped to white, not squashed
    np.save(tmp_path / "f255.npy", images(5).astype(np.float32))
    with pytest.raises(VscError, match=r"must lie in \[0, 1\]"):
        open_own(tmp_path / "f255.npy", None, "unit")[:]
    np.save(tmp_path / "amb.npy", np.zeros((5, 3, 4, 3), np.uint8))
    with pytest.raises(VscError, match="could be"):
        open_own(tmp_path / "amb.npy", None, "unit")
    assert open_own(tmp_path / "x16.npy", None, "unit")[np.array([], int)].shape == (0, 48)


def test_encode_refuses_images_of_another_shape(tmp_path):
    np.save(tmp_path / "rgb.npy", images(60, 8, 6, 3))  # 144 values per image
    np.save(tmp_path / "grey.npy", images(60, 12, 12))  # also 144, but another shape
    result = run("train", "--data", tmp_path / "rgb.npy", "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    result = run("encode", tmp_path / "run", "--data", tmp_path / "grey.npy", "-o", tmp_path / "c.h5", "--quiet")
    assert_one_line_error(result, 1, "1x12x12", "trained on 3x8x6")
    assert not (tmp_path / "c.h5").exists()


def test_a_non_finite_first_step_on_unscaled_images_names_their_scale(tmp_path):
    """Own 8-bit images with --normalise none stay 0..255; the paper's networks then step to a non-finite loss, and
    the error says why and what to use instead (not only "try a lower --lr")."""
    from click.testing import CliRunner

    from vsc_cli.cli import main

    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (200, 8, 8)).astype(np.uint8))
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "x.npy"), "--normalise", "none", "--paper",
                                  "--iterations", "20", "--batch-size", "20", "--dim", "8", "--out",
                                  str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 1 and "non-finite" in r.output, r.output
    assert "pixel values reach 255 (--normalise none)" in r.output and "--normalise unit" in r.output
    assert "Traceback" not in r.output

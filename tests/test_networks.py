"""The conv network (`--network conv`) for every family: its layers against plain loops, its shapes, and every
command on a conv run."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vsc_cli
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.errors import VscError
from vsc_cli.models.networks import ConvDecoder, ConvEncoder, ConvLayout
from vsc_cli.models.vae import VAE


def naive_conv(x, weight, bias):
    """4x4 convolution, stride 2, padding 1, by loops over output pixels (the definition)."""
    b, _, h, w = x.shape
    padded = torch.zeros(b, x.shape[1], h + 2, w + 2, dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    out = torch.zeros(b, weight.shape[0], h // 2, w // 2, dtype=x.dtype)
    for i in range(h // 2):
        for j in range(w // 2):
            patch = padded[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4]  # (B, Cin, 4, 4)
            out[:, :, i, j] = torch.einsum("bckl,ockl->bo", patch, weight) + bias
    return out


def naive_conv_transpose(x, weight, bias):
    """4x4 transposed convolution, stride 2, padding 1: every input pixel adds its kernel-weighted copy at
    (2i - 1 + k, 2j - 1 + l) of a twice larger map (the definition: the adjoint of the strided convolution)."""
    b, _, h, w = x.shape
    full = torch.zeros(b, weight.shape[1], 2 * h + 2, 2 * w + 2, dtype=x.dtype)  # one pixel of margin each side
    for i in range(h):
        for j in range(w):
            full[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += torch.einsum("bc,cokl->bokl", x[:, :, i, j], weight)
    return full[:, :, 1:-1, 1:-1] + bias[None, :, None, None]


def naive_encoder(enc: ConvEncoder, x_flat):
    lay = enc.layout
    img = torch.zeros(len(x_flat), lay.c, lay.hp, lay.wp, dtype=x_flat.dtype)
    img[:, :, lay.top:lay.top + lay.h, lay.left:lay.left + lay.w] = x_flat.reshape(-1, lay.c, lay.h, lay.w)
    h = img
    for conv in enc.convs[::2]:
        h = torch.relu(naive_conv(h, conv.weight, conv.bias))
    return h.reshape(len(h), -1) @ enc.head.weight.T + enc.head.bias


def naive_decoder(dec: ConvDecoder, z):
    lay = dec.layout
    h = torch.relu(z @ dec.fc.weight.T + dec.fc.bias).reshape(len(z), lay.widths[-1], *lay.small)
    for up in [*dec.ups[::2], dec.last]:
        h = naive_conv_transpose(h, up.weight, up.bias)
        if up is not dec.last:
            h = torch.relu(h)
    h = h[:, :, lay.top:lay.top + lay.h, lay.left:lay.left + lay.w]
    groups = [h[:, g * lay.c:(g + 1) * lay.c].reshape(len(z), -1) for g in range(dec.groups)]
    return torch.cat(groups, dim=1)  # the means of every pixel, then the raw log-variances


@pytest.mark.parametrize("shape", [(3, 12, 10), (1, 8, 8), (2, 16, 32)])
def test_the_conv_networks_match_plain_loops_in_value_and_gradient(shape):
    torch.manual_seed(0)
    layout = ConvLayout(shape, (3, 4))
    enc, dec = ConvEncoder(layout, 7).double(), ConvDecoder(layout, 5, 2).double()
    pixels = int(np.prod(shape))
    x = torch.randn(3, pixels, dtype=torch.float64, requires_grad=True)
    z = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    for net, ref, arg in ((enc, naive_encoder, x), (dec, naive_decoder, z)):
        got, want = net(arg), ref(net, arg)
        torch.testing.assert_close(got, want)
        w = torch.randn_like(got)
        g_got = torch.autograd.grad((got * w).sum(), [arg, *net.parameters()])
        g_want = torch.autograd.grad((want * w).sum(), [arg, *net.parameters()])
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b)
    assert dec(z).shape == (3, 2 * pixels)
    assert torch.autograd.gradcheck(lambda v: enc(v), (x[:1],)) and torch.autograd.gradcheck(lambda v: dec(v), (z[:1],))


def test_the_layout_pads_to_powers_of_two_and_halves_down_to_four():
    mnist = ConvLayout((1, 28, 28), (32, 64, 128, 256))
    assert (mnist.hp, mnist.wp, mnist.layers, mnist.widths, mnist.small) == (32, 32, 3, [32, 64, 128], (4, 4))
    assert (mnist.top, mnist.left) == (2, 2)
    faces = ConvLayout((3, 64, 64), (32, 64))
    assert (faces.layers, faces.widths, faces.features) == (4, [32, 64, 64, 64], 64 * 16)
    wide = ConvLayout((3, 16, 40), (8,))
    assert (wide.hp, wide.wp, wide.small) == (16, 64, (4, 16))
    with pytest.raises(VscError, match="at least 8x8"):
        ConvLayout((1, 6, 30), (8,))


def test_the_gaussian_decoder_keeps_its_per_pixel_variance_and_floor():
    cfg = TrainConfig(network="conv", channels=(4,), dim=3, image_shape=[3, 8, 8], logvar_init=-6.0)
    model = VAE(cfg, 192).double()
    mean, logvar = model.decoder(torch.zeros(2, 3, dtype=torch.float64))
    assert mean.shape == logvar.shape == (2, 192)
    assert (logvar >= cfg.min_logvar).all()
    # logvar_init sets the bias of the log-variance channels: with z = 0 and zero weights the log-variance is it
    with torch.no_grad():
        for p in model.decoder.net.parameters():
            if p.dim() > 1:
                p.zero_()
    assert torch.allclose(model.decoder(torch.zeros(1, 3, dtype=torch.float64))[1], torch.tensor(-6.0).double())
    with pytest.raises(VscError, match="shape"):
        VAE(TrainConfig(network="conv", dim=3), 192)


def images(tmp_path, shape=(60, 16, 16, 3)):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


@pytest.mark.parametrize("model", ["vsc", "vae", "thresholded", "topk"])
def test_every_family_trains_with_the_conv_network(model, tmp_path):
    data = images(tmp_path)
    vsc_cli.fit(vsc_cli.train_config(data=str(data), model=model, dim=6, channels=(4, 8), iterations=4,
                                     batch_size=20, **({"k": 2} if model == "topk" else {})),
                tmp_path / "run", progress=False)
    run = vsc_cli.load(tmp_path / "run")
    assert run.model.cfg.network == "conv"  # own colour images: the default recipe's choice
    assert isinstance(run.model.encoder, ConvEncoder) and isinstance(run.model.decoder.net, ConvDecoder)
    codes = run.encode(np.load(data)[:5].transpose(0, 3, 1, 2).reshape(5, -1).astype(np.float32) / 255)
    assert codes.code.shape == (5, 6) and bool(torch.isfinite(torch.as_tensor(codes.code)).all())


def test_the_default_network_follows_the_data(tmp_path):
    grey_small = tmp_path / "g.npy"
    np.save(grey_small, np.zeros((20, 16, 16), np.uint8))
    grey_big = tmp_path / "b.npy"
    np.save(grey_big, np.zeros((20, 32, 32), np.uint8))
    cfg = vsc_cli.train_config
    assert cfg(data="fmnist").network == "mlp" and cfg(data="mnist").network == "mlp"
    assert (cfg(data="celeba").network, cfg(data="celeba").image_size, cfg(data="celeba").lr) == ("conv", 64, 1e-3)
    paper = cfg(data="celeba", recipe="paper")
    assert (paper.network, paper.image_size, paper.hidden, paper.lr) == ("mlp", None, (2000, 2000), 1e-4)  # 32x32 MLP
    assert cfg(data="celeba", network="mlp").image_size is None
    assert cfg(data=str(grey_small)).network == "mlp" and cfg(data=str(grey_big)).network == "conv"
    assert cfg(data=str(grey_big), image_size=16).network == "mlp"
    assert cfg(data=str(grey_big), recipe="paper").network == "mlp"
    assert cfg(data=str(grey_big), network="mlp").network == "mlp"


def test_every_command_works_on_a_conv_run(tmp_path):
    rng = np.random.default_rng(0)  # grey 12x12 with two classes: conv only when asked
    data, run = tmp_path / "x.npz", tmp_path / "run"
    np.savez(data, images=rng.integers(0, 256, (80, 12, 12), dtype=np.uint8), labels=np.arange(80) % 2)
    r = CliRunner()

    def ok(*args):
        res = r.invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    base = ["--data", data, "--network", "conv", "--channels", "4,8", "--dim", "5", "--batch-size", "16", "--quiet"]
    ok("train", *base, "--iterations", "6", "--out", run, "--checkpoint-every", "3")
    assert (json.loads((run / "metrics.json").read_text())["iterations"]) == 6
    cfg = (run / "config.toml").read_text()
    assert 'network = "conv"' in cfg and "channels = [4, 8]" in cfg and "image_shape = [1, 12, 12]" in cfg
    # a conv run stopped at iteration 3 and resumed with --resume ends as the uninterrupted one
    from vsc_cli.trainers.checkpoint import load_checkpoint
    from vsc_cli.trainers.recipes import resolve
    from vsc_cli.trainers.train import train

    stopped = resolve(data=str(data), network="conv", channels=(4, 8), dim=5, batch_size=16, iterations=6,
                      checkpoint_every=3)
    assert train(stopped, tmp_path / "cut", progress=False, stop_at=3) is None
    ok("train", "--resume", tmp_path / "cut", "--quiet")
    whole, cut = load_checkpoint(run)["model"], load_checkpoint(tmp_path / "cut")["model"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    ok("train", "--config", run / "config.toml", "--out", tmp_path / "again", "--quiet")
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert a["test_elbo"] == b["test_elbo"]  # the same run again, on the same machine
    ok("encode", run, "-o", tmp_path / "codes.h5", "--quiet")
    ok("classify", tmp_path / "codes.h5", "--labelled", "40")
    ok("sparsity", run, "--quiet")
    ok("figure", "codes", run, "-o", tmp_path / "codes.png", "--count", "2")
    ok("figure", "alter", run, "-o", tmp_path / "alter.png", "--index", "0", "--elements", "2")


def test_a_size_the_conv_network_cannot_take_is_one_line(tmp_path):
    data = images(tmp_path, (40, 6, 6))
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--network", "conv", "--dim", "3",
                                    "--iterations", "2", "--batch-size", "8", "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 1 and "at least 8x8" in res.output and "Traceback" not in res.output


def test_the_conv_benchmark_times_every_layer_and_the_obvious_version():
    from vsc_cli.pipelines import bench as B

    cfg = TrainConfig(network="conv", channels=(4, 8), dim=5, image_shape=[3, 16, 16])
    model = VAE(cfg, 768)
    calls = []
    real = torch.ops.aten.convolution_backward
    step = B._compute_only_step(model, torch.rand(6, 768), "cpu", torch.float32)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:  # every conv layer's backward runs once per step, the data's layer without its input gradient
        torch.ops.aten.convolution_backward = lambda *a: calls.append(a[-1]) or real(*a)
        step()
    finally:
        torch.ops.aten.convolution_backward = real
    assert len(calls) == len(layers) == 4 and calls[0] == [False, True, False] and calls[1] == [True, True, False]
    # the obvious version is the same network: its loss is finite and its decoder's output has the vsc layout
    obvious = B.ObviousConvVSC((3, 16, 16), (4, 8), 5, "gaussian")
    assert obvious.decode(torch.zeros(2, 5)).shape == (2, 2 * 768) and torch.isfinite(obvious.loss(
        torch.rand(2, 768), 50.0, 0.5))
    r = B.run_conv_bench(dim=5, batch_size=4, shape=(3, 16, 16), channels=(4, 8), repeats=1, warmup=0)
    rows = {row["step"]: row for row in r["rows"]}
    assert set(rows) == {"vsc (NCHW)", "vsc (channels-last)", "convolutions + matrix products", "obvious eager"}
    mm = rows["convolutions + matrix products"]["ms_per_iteration"]
    assert all(abs(row["x_matrix_products"] - row["ms_per_iteration"] / mm) < 1e-9 for row in rows.values())


def test_vsc_bench_train_network_conv_prints_its_table():
    res = CliRunner().invoke(main, ["bench", "--train", "--network", "conv", "--dim", "8", "--repeats", "1",
                                    "--warmup", "0", "--threads", "1"])
    assert res.exit_code == 0 and "x convolutions + matrix products" in res.output, res.output
    res = CliRunner().invoke(main, ["bench", "--network", "conv"])
    assert res.exit_code == 2 and "--network is for --train" in res.output


def test_colour_images_too_small_for_the_conv_network_get_the_mlp(tmp_path):
    np.save(tmp_path / "tiny.npy", np.zeros((20, 8, 6, 3), np.uint8))
    assert vsc_cli.train_config(data=str(tmp_path / "tiny.npy")).network == "mlp"


def test_the_conv_network_starts_its_decoder_variance_at_the_datas():
    assert vsc_cli.train_config(data="celeba").logvar_init == "data"
    assert vsc_cli.train_config(data="fmnist", network="conv").logvar_init == "data"
    assert vsc_cli.train_config(data="fmnist", network="conv", logvar_init=-3.0).logvar_init == -3.0
    # the MLP keeps PyTorch's init under default-3 and the paper's recipe; default-4 starts every network's at the data's
    assert vsc_cli.train_config(data="fmnist", recipe="default-3").logvar_init is None
    assert vsc_cli.train_config(data="fmnist", recipe="paper").logvar_init is None
    assert vsc_cli.train_config(data="fmnist").logvar_init == "data"

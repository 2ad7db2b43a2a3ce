"""The encoder's input: with --centre the encoder sees x minus the training images' mean (saved with the model), and
--encoder-scale multiplies it; the checkpoint, `vsc encode` and the Python API all feed it the same way."""
import numpy as np
import pytest
import torch

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE
from vsc_cli.trainers.checkpoint import build_model, load_checkpoint


@pytest.mark.parametrize("scale", [None, 30.0])
def test_centred_encoder_sees_x_minus_the_mean(scale):
    cfg = TrainConfig(dim=4, hidden=(8,), centre=True, encoder_scale=scale)
    torch.manual_seed(0)
    model = VAE(cfg, 6)
    torch.manual_seed(0)
    plain = VAE(TrainConfig(dim=4, hidden=(8,)), 6)
    mean = torch.linspace(0.1, 0.6, 6)
    model.x_mean.copy_(mean)
    x = torch.rand(3, 6)
    for a, b in zip(model.encode(x), plain.encode((x - mean) * (scale or 1.0))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert "x_mean" in model.state_dict() and "x_mean" not in plain.state_dict()


def test_centred_run_round_trip_through_checkpoint_encode_decode_and_api(shared_data, tmp_path):
    """A short centred run stores the training mean; the checkpoint, `vsc encode` and the API all use it."""
    import h5py

    import vsc_cli as vsc
    from vsc_cli.evaluation.codes import encode as encode_h5
    from vsc_cli.data.datasets import load_split
    from vsc_cli.trainers.train import train

    cfg = TrainConfig(data="fmnist", dim=12, hidden=(32,), iterations=40, train_size=600, test_size=100,
                      batch_size=100, checkpoint_every=40, log_every=20, centre=True, rate_weight=1.0,
                      spike="sigmoid", encoder_scale="data")
    out = tmp_path / "run"
    metrics = train(cfg, out, data_dir=shared_data, progress=False)
    assert metrics["test_aggregate_rate_kl"] > 0
    state = load_checkpoint(out)
    assert state["config"]["centre"] is True and state["config"]["rate_weight"] == 1.0
    x_train, _ = load_split("fmnist", "train", shared_data, "unit", 600)
    np.testing.assert_allclose(state["model"]["x_mean"].numpy(), x_train.mean(0), rtol=1e-5, atol=1e-7)
    # "data" is resolved once to 1 / the mean per-pixel standard deviation, and the checkpoint keeps the number
    assert state["config"]["encoder_scale"] == pytest.approx(1 / np.sqrt(x_train.astype(np.float64).var(0).mean()),
                                                             rel=1e-6)
    model = build_model(state)
    run = vsc.load(out)
    x, _ = vsc.dataset("fmnist", "test", data_dir=shared_data, limit=20)
    flat = torch.from_numpy(x.reshape(20, -1))
    mu, logvar, v = model.encode(flat)
    codes = run.encode(x)
    torch.testing.assert_close(codes.mu, mu.detach())
    plain = model.encoder(flat)[:, :12]  # the network fed the raw images: another code
    assert not torch.allclose(plain, mu.detach(), atol=1e-4)
    encode_h5(out, tmp_path / "codes.h5", data_dir=shared_data, limit=20)
    with h5py.File(tmp_path / "codes.h5") as f:
        np.testing.assert_allclose(f["test/mu"][:], mu.detach().numpy(), rtol=1e-5, atol=1e-6)
    # the decoder outputs images, never centred ones: decode is the decoder's mean of the code, nothing added
    decoded = torch.as_tensor(np.asarray(run.decode(codes.code))).reshape(20, -1)
    torch.testing.assert_close(decoded, model.decoder.mean(codes.code).detach())

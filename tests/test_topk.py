"""The top-k sparse autoencoder family (vsc_cli/models/topk.py) against slow references, and through every command."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from naive import auxk_loop, topk_loop
from vsc_cli.cli import main
from vsc_cli.common.config import TrainConfig
from vsc_cli.common.registry import FAMILIES
from vsc_cli.models.distributions import draw_and_kl
from vsc_cli.models.schedule import Step
from vsc_cli.models.topk import AuxK, NoPrior, TopK
from vsc_cli.models.vae import VAE


def pre_activations(B=7, J=9, seed=0):
    return torch.randn(B, J, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_code_keeps_the_k_largest_through_a_relu():
    pre = pre_activations()
    for k in (1, 3, 9):
        q = TopK(pre, k)
        z = q.rsample()
        torch.testing.assert_close(z, topk_loop(pre, k), rtol=0, atol=0)
        assert ((z != 0).sum(-1) <= k).all()
        torch.testing.assert_close(q.gamma, (z != 0).to(pre.dtype), rtol=0, atol=0)  # P(z_j != 0): 0 or 1
        torch.testing.assert_close(q.mean, q.gamma * q.mu, rtol=0, atol=0)  # E[z] = gamma mu, as every family
        assert (q.mu == torch.relu(pre)).all() and torch.isneginf(q.logvar).all()  # a point mass


def test_the_gradient_is_the_relus_on_the_kept_elements_and_zero_elsewhere():
    pre = pre_activations(seed=1).requires_grad_()
    w = pre_activations(seed=2)
    (g,) = torch.autograd.grad((w * TopK(pre, 3).rsample()).sum(), pre)
    ref = pre.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad((w * topk_loop(ref, 3)).sum(), ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda p: TopK(p, 3).rsample(), (pre.detach().clone().requires_grad_(),))


def test_the_pair_draws_the_code_with_no_kl():
    pre = pre_activations()
    q = TopK(pre, 2)
    for step in (Step(50.0, 1.0, 0.5), Step.evaluation(0.5)):  # the same in training and evaluation
        z, kl = draw_and_kl(q, NoPrior((9,)), None, step)
        torch.testing.assert_close(z, topk_loop(pre, 2))
        assert kl == {} and TopK.terms == {}  # no KL term at all: the objective is the reconstruction


class LinearModel(torch.nn.Module):
    """The decoder AuxK reconstructs through, and its counter of images since each latent fired."""

    def __init__(self, J=9, P=5):
        super().__init__()
        self.decoder = torch.nn.Linear(J, P).double()
        self.decoder.mean = self.decoder.forward
        self.register_buffer("since_fired", torch.zeros(J, dtype=torch.float64))


def test_auxk_counts_images_since_each_latent_fired_and_matches_the_loop():
    torch.manual_seed(0)
    model, pre, x = LinearModel(), pre_activations(), pre_activations(J=5, seed=3)
    aux = AuxK(model, k_aux=4, k=2, dead_after=14)
    terms = {"pre": pre, "gamma": TopK(pre, 2).gamma}
    fired = (terms["gamma"] > 0).any(0)
    assert aux(terms, None, x) == 0.0  # 7 images: nothing dead yet
    assert (model.since_fired == torch.where(fired, 0.0, 7.0)).all()
    value = aux(terms, None, x)  # 14 images: every latent that never fired is dead
    dead = ~fired
    assert dead.any() and (model.since_fired[dead] == 14).all()
    torch.testing.assert_close(value, auxk_loop(model.decoder, x, pre, 2, 4, dead), rtol=1e-12, atol=1e-12)
    # its gradient reaches the dead latents' pre-activations, never the code's
    p = pre.clone().requires_grad_()
    (g,) = torch.autograd.grad(aux({"pre": p, "gamma": TopK(pre, 2).gamma}, None, x), p)
    assert (g[:, fired] == 0).all() and (g[:, dead] != 0).any()


def test_the_family_is_registered_and_refuses_what_it_cannot_do():
    assert FAMILIES["topk"] is TopK
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--model", "topk", "--k", "300", "--dim", "200"])
    assert r.exit_code == 2 and "--k 300 is more than the 200 latent dimensions" in r.output
    r = runner.invoke(main, ["train", "--model", "topk", "--rate-weight", "3"])
    assert r.exit_code == 2 and "--rate-weight is a setting of VSC (--model vsc)" in r.output
    with pytest.raises(Exception, match="no prior to sample"):
        VAE(TrainConfig(model="topk", dim=4, k=2, hidden=(8,)), 6).sample_prior(3)


@pytest.fixture(scope="module")
def topk_run(tmp_path_factory):
    """A small top-k run on own images, with AuxK on and latents dead after 40 images."""
    root = tmp_path_factory.mktemp("topk")
    images = np.random.default_rng(0).integers(0, 256, (120, 6, 6), dtype=np.uint8)
    np.save(root / "x.npy", images)
    args = ["train", "--model", "topk", "--k", "2", "--dim", "8", "--hidden", "16", "--data", str(root / "x.npy"),
            "--iterations", "30", "--batch-size", "20", "--dead-after", "40", "--log-every", "10",
            "--checkpoint-every", "10", "--quiet", "--json"]
    whole = CliRunner().invoke(main, [*args, "--out", str(root / "whole")], catch_exceptions=False)
    assert whole.exit_code == 0, whole.output
    return root, args, json.loads(whole.stdout)


def test_a_run_trains_encodes_and_reports_at_most_k_active(topk_run):
    root, _, metrics = topk_run
    assert metrics["elbo_is_bound"] is False and metrics["test_kl_slab"] == 0 and metrics["test_kl_spike"] == 0
    assert 0 < metrics["test_sparsity"] <= 2 / 8
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(root / "whole"), "-o", str(root / "codes.h5"), "--quiet"])
    assert r.exit_code == 0, r.output
    import h5py

    with h5py.File(root / "codes.h5") as f:
        code, gamma, mu = (np.asarray(f[f"test/{k}"]) for k in ("code", "gamma", "mu"))
    assert ((code != 0).sum(1) <= 2).all() and np.array_equal(code, gamma * mu)
    r = runner.invoke(main, ["sparsity", str(root / "whole"), "--json", "--quiet"])
    assert r.exit_code == 0 and json.loads(r.stdout)["active_per_example"] <= 2
    r = runner.invoke(main, ["figure", "prior", str(root / "whole"), "-o", str(root / "p.png")])
    assert r.exit_code == 1 and "no prior to sample" in r.output and "Traceback" not in r.output


def test_a_resumed_run_goes_on_exactly_with_its_auxk_counter(topk_run):
    root, args, _ = topk_run
    from vsc_cli.trainers.checkpoint import load_checkpoint

    cut = root / "cut"
    from vsc_cli.trainers.recipes import resolve
    from vsc_cli.trainers.train import train

    cfg = resolve("default", model="topk", k=2, dim=8, hidden=(16,), data=str(root / "x.npy"), iterations=30,
                  batch_size=20, dead_after=40, log_every=10, checkpoint_every=10)
    assert train(cfg, cut, progress=False, stop_at=15) is None
    assert load_checkpoint(cut)["model"]["since_fired"].shape == (8,)  # the counter is saved with the model
    r = CliRunner().invoke(main, ["train", "--resume", str(cut), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    whole, again = load_checkpoint(root / "whole")["model"], load_checkpoint(cut)["model"]
    for name in whole:
        assert torch.equal(whole[name], again[name]), name


def test_the_family_starts_from_gao_et_als_input_handling_unless_told_otherwise():
    """Centred, unit-scale encoder input by default (the pre-encoder bias): without it the mean image decides every
    pre-activation and the same k latents win for every image; a given setting still wins, under either recipe."""
    from vsc_cli.trainers.recipes import resolve

    for recipe in ("default", "paper"):
        cfg = resolve(recipe, model="topk", k=3, dim=10)
        assert (cfg.centre, cfg.encoder_scale) == (True, "data")
        cfg = resolve(recipe, model="topk", k=3, dim=10, centre=False, encoder_scale=None)
        assert (cfg.centre, cfg.encoder_scale) == (False, None)
    assert resolve("paper", model="vae").centre is False  # the other families keep theirs

"""Families found by class: the pair registry's lookup (vsc_cli/models/distributions.py: the most specific registered
(posterior, prior) pair, through both classes' MRO), the FAMILIES / PRIORS tables (vsc_cli/common/registry.py), and a
family of one's own, defined in this file, registered with one line and trained through the Python API."""
import numpy as np
import pytest
import torch
from torch.distributions import Distribution, constraints

import vsc_cli as vsc
from vsc_cli.common.registry import FAMILIES, PRIORS
from vsc_cli.models import distributions
from vsc_cli.models.distributions import Posterior, pair, register
from vsc_cli.models.gaussian import Normal, StandardNormal
from vsc_cli.models.pseudo_inputs import PseudoInputPrior, PseudoMixturePrior
from vsc_cli.models.spike_slab import PaperPrior, SpikeSlabPosterior
from vsc_cli.models.thresholded import Thresholded, ThresholdedPrior
from vsc_kernels import SpikeSlab, SpikeSlabPrior, kl_slab


# ------------------------------------------------------------------------------------------- the pair registry
@pytest.fixture
def pairs(monkeypatch):
    """The pair registry, restored afterwards: pairs registered in a test do not outlive it."""
    monkeypatch.setattr(distributions, "_PAIRS", dict(distributions._PAIRS))


class QBase:
    pass


class QChild(QBase):
    pass


class PBase:
    pass


class PChild(PBase):
    pass


class Unrelated:
    pass


def test_a_subclass_finds_its_parents_pair(pairs):
    @register(QBase, PBase)
    def base(q, p, x, step, generator, backend):
        return "base"

    assert pair(QBase(), PBase()) is base
    assert pair(QChild(), PBase()) is base  # through the posterior's MRO
    assert pair(QBase(), PChild()) is base  # through the prior's MRO
    assert pair(QChild(), PChild()) is base
    # draw_and_kl calls it with the pair, the image, the step, the generator and the backend
    assert distributions.draw_and_kl(QChild(), PChild(), None, None) == "base"


def test_a_more_specific_registration_wins(pairs):
    @register(QBase, PBase)
    def base(q, p, x, step, generator, backend):
        return "base"

    @register(QChild, PBase)
    def child(q, p, x, step, generator, backend):
        return "child"

    @register(QBase, PChild)
    def child_prior(q, p, x, step, generator, backend):
        return "child prior"

    assert pair(QChild(), PBase()) is child
    assert pair(QBase(), PChild()) is child_prior
    assert pair(QBase(), PBase()) is base  # the parent's own pair is unchanged


def test_an_unregistered_pair_is_an_error_naming_both_classes(pairs):
    @register(QBase, PBase)
    def base(q, p, x, step, generator, backend):
        return "base"

    with pytest.raises(NotImplementedError, match="Unrelated.*PBase"):
        pair(Unrelated(), PBase())
    with pytest.raises(NotImplementedError, match="QChild.*Unrelated"):
        pair(QChild(), Unrelated())


def test_the_built_in_pairs_are_found_by_class():
    mu = torch.zeros(2, 3)
    paper = pair(SpikeSlabPosterior(mu, mu, mu), PaperPrior(0.5, (3,)))
    assert paper is pair(SpikeSlab(mu, mu, mu), SpikeSlabPrior(0.5))  # registered on vsc_kernels' classes
    assert pair(SpikeSlabPosterior(mu, mu, mu), StandardNormal((3,))) is paper  # N(0, 1) is eq. 4 at alpha = 1
    learned = pair(SpikeSlabPosterior(mu, mu, mu), PseudoInputPrior(4, 2, 3, 0.1, 10.0))
    assert learned is not paper
    assert pair(SpikeSlabPosterior(mu, mu, mu), PseudoMixturePrior(4, 2, 3, 0.1, 10.0)) is learned  # its subclass
    vae = pair(Normal(mu, mu), StandardNormal((3,)))
    thresholded = pair(Thresholded(mu, mu, 0.5), ThresholdedPrior(0.1, 0.5, (3,)))
    assert len({paper, learned, vae, thresholded}) == 4
    with pytest.raises(NotImplementedError, match="Normal.*PaperPrior"):  # the VAE against eq. 4: none registered
        pair(Normal(mu, mu), PaperPrior(0.5, (3,)))


def test_the_tables_give_the_built_in_classes():
    assert "vsc" in FAMILIES and "gan" not in FAMILIES
    assert list(FAMILIES)[:3] == ["vsc", "vae", "thresholded"]
    assert FAMILIES["vsc"] is SpikeSlabPosterior and FAMILIES["vae"] is Normal
    assert FAMILIES["thresholded"] is Thresholded
    assert all(issubclass(FAMILIES[name], Posterior) for name in FAMILIES)
    assert list(PRIORS) == ["spike-slab", "pseudo-inputs", "pseudo-mixture"]
    assert PRIORS["spike-slab"] is PaperPrior and PRIORS["pseudo-inputs"] is PseudoInputPrior
    assert PRIORS["pseudo-mixture"] is PseudoMixturePrior
    with pytest.raises(KeyError):
        FAMILIES["gan"]


# ------------------------------------------------------------------------------------------- a family of one's own
class ToyPosterior(Posterior):
    """q(z|x): each element is a draw of N(mu, sigma^2) kept with probability KEEP, else 0 (dropout on a Gaussian):
    P(z_j != 0) = KEEP and E[z] = KEEP mu. Its prior does the same to N(0, 1), so that the spike terms of eq. 9
    cancel and the KL is KEEP times the Gaussian one."""

    KEEP = 0.75
    arg_constraints = {"mu": constraints.real, "logvar": constraints.real}
    support = constraints.real

    def __init__(self, mu, logvar):
        self.mu, self.logvar = mu, logvar
        super().__init__(batch_shape=mu.shape, validate_args=False)

    @classmethod
    def from_heads(cls, heads, cfg):
        return cls(*heads)

    @classmethod
    def make_prior(cls, cfg, pixels, posterior):
        return ToyPrior((cfg.dim,))

    @property
    def gamma(self):
        return torch.full_like(self.mu, self.KEEP)


class ToyPrior(Distribution):
    arg_constraints = {}
    support = constraints.real

    def __init__(self, shape):
        super().__init__(batch_shape=torch.Size(shape), validate_args=False)


TOY_DRAWS = []  # step.exact of every call of the toy pair: training draws (False), evaluation draws (True)


@register(ToyPosterior, ToyPrior)
def _toy_draw_and_kl(q, p, x, step, generator, backend):
    TOY_DRAWS.append(step.exact)
    eps = torch.randn(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator)
    keep = torch.rand(q.mu.shape, dtype=q.mu.dtype, device=q.mu.device, generator=generator) < q.KEEP
    z = keep.to(q.mu.dtype) * (q.mu + torch.exp(0.5 * q.logvar) * eps)
    kl = q.KEEP * kl_slab(q.mu, q.logvar).sum(-1)
    return z, {"kl_slab": kl, "kl_spike": torch.zeros_like(kl)}


@pytest.fixture
def toy_family():
    FAMILIES.register("toy", ToyPosterior, "a Gaussian kept with probability 3/4")  # the one line it takes
    TOY_DRAWS.clear()
    yield ToyPosterior
    FAMILIES.unregister("toy")


def test_a_family_of_ones_own_trains_and_encodes_through_the_api(toy_family, tmp_path):
    images = np.random.default_rng(0).random((60, 8, 8)).astype(np.float32)  # grey 8x8 images in [0, 1]
    np.save(tmp_path / "images.npy", images)
    data = str(tmp_path / "images.npy")
    cfg = vsc.train_config(model="toy", data=data, dim=4, iterations=5, hidden=(8,), batch_size=20,
                           log_every=5, checkpoint_every=5)
    assert "toy: a Gaussian kept with probability 3/4" in FAMILIES.help()
    # no recipe, and none of the spike-and-slab family's settings: it has its own only
    assert cfg.model == "toy" and "pretrain" not in cfg and "rate_weight" not in cfg
    metrics = vsc.fit(cfg, tmp_path / "run", data_dir=tmp_path, progress=False)
    assert TOY_DRAWS[:5] == [False] * 5 and TOY_DRAWS[5:] and all(TOY_DRAWS[5:])  # 5 steps, then exact draws
    assert metrics["test_sparsity"] == pytest.approx(ToyPosterior.KEEP)  # the mean gamma of its test codes
    assert np.isfinite(metrics["test_elbo"])

    run = vsc.load(tmp_path / "run")
    assert run.model.family is ToyPosterior and isinstance(run.model.prior, ToyPrior)
    assert run.model.encoder[-1].out_features == 2 * 4  # one output per head and element
    x, _ = vsc.dataset(data, "test")  # every tenth image, normalised as the run was trained
    assert x.shape == (6, 1, 8, 8)
    codes = run.encode(x)
    for name in ("mu", "logvar", "gamma", "code"):
        assert getattr(codes, name).shape == (6, 4), name
    mu, logvar = run.model.encode(torch.from_numpy(x.reshape(6, 64)))
    torch.testing.assert_close(codes.mu, mu)
    torch.testing.assert_close(codes.logvar, logvar)
    torch.testing.assert_close(codes.gamma, torch.full((6, 4), ToyPosterior.KEEP))  # what the toy class says
    torch.testing.assert_close(codes.code, ToyPosterior.KEEP * codes.mu)  # E[z]


def test_the_toy_family_is_gone_after_its_test():
    assert "toy" not in FAMILIES and "toy" not in FAMILIES.help()

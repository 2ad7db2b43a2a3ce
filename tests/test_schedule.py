"""What changes during training (vsc_cli/models/schedule.py): the sample's sigmoid scale c (C.2), the slab scale of
spike pre-training, the prior's annealed alpha; and a step's alpha being the KL's."""
import pytest
import torch

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.schedule import Step, alpha_schedule, c_schedule, lambda_schedule
from vsc_cli.models.vae import VAE


def test_c_schedule_linear_50_to_200():
    assert c_schedule(0, 20_000) == 50.0
    assert c_schedule(19_999, 20_000) == 200.0
    assert c_schedule(9_999, 20_000) == pytest.approx(50 + 150 * 9_999 / 19_999)
    steps = [c_schedule(i, 101) for i in range(101)]
    assert all(b - a == pytest.approx(1.5) for a, b in zip(steps, steps[1:]))


def test_c_schedule_with_a_ramp_of_its_own_then_c_end():
    assert [c_schedule(i, 20_000, ramp=101) for i in range(101)] == [c_schedule(i, 101) for i in range(101)]
    assert all(c_schedule(i, 20_000, ramp=101) == 200.0 for i in (100, 101, 5_000, 19_999))
    assert c_schedule(7, 20_000, ramp=None) == c_schedule(7, 20_000)


def test_default_4_at_20000_iterations_is_its_5000_iteration_run_continued():
    """The phases of default-4 are in iterations of their own: every step of a 5,000-iteration run is the
    same step of a 20,000-iteration one, after which nothing but training goes on (c at its end, lambda 1, the
    run's alpha). default-3's phases scale with the run instead."""
    from vsc_cli.models.schedule import Schedule
    from vsc_cli.trainers.recipes import resolve

    for alpha in (0.01, 0.1):  # with and without alpha annealing
        short = Schedule(resolve("default-4", data="fmnist", dim=8, alpha=alpha, iterations=5_000))
        long = Schedule(resolve("default-4", data="fmnist", dim=8, alpha=alpha, iterations=20_000))
        assert all(short(i) == long(i) for i in range(5_000))
        assert long(5_000) == long(19_999) == Step(200.0, 1.0, alpha, 1.0)
        assert short.settled == long.settled <= 5_000
    old = Schedule(resolve("default-3", data="fmnist", dim=8, alpha=0.01, iterations=20_000))
    assert old(4_999).slab_scale == 0.0 and old(4_999).c < 200  # still pre-training at 5,000


def test_lambda_schedule():
    got = [lambda_schedule(i, 3, 4) for i in range(9)]
    assert got == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert [lambda_schedule(i, 2, 0) for i in range(4)] == [0, 0, 1, 1]
    assert lambda_schedule(0, 0, 0) == 1.0


def test_alpha_schedule():
    got = [alpha_schedule(i, 0.01, 0.16, 4) for i in range(6)]
    assert got == pytest.approx([0.16, 0.08, 0.04, 0.02, 0.01, 0.01])  # geometric: halves each step here
    assert alpha_schedule(0, 0.3, None, 100) == 0.3 and alpha_schedule(5, 0.3, 0.5, 0) == 0.3
    held = [alpha_schedule(i, 0.01, 0.16, 4, hold=3) for i in range(9)]
    assert held == pytest.approx([0.16, 0.16, 0.16, 0.16, 0.08, 0.04, 0.02, 0.01, 0.01])


@pytest.mark.parametrize("prior", ["spike-slab", "pseudo-inputs", "pseudo-mixture"])
def test_annealed_alpha_is_the_kl_of_that_alpha(prior):
    """A step whose alpha is a is exactly the model whose config says alpha = a (same weights, same noise)."""
    x = torch.rand(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = []
    for alpha, override in ((0.01, 0.2), (0.2, None)):
        torch.manual_seed(0)
        model = VAE(TrainConfig(dim=6, hidden=(8,), alpha=alpha, prior=prior, pseudo_inputs=3, dtype="float64"),
                    12).double()
        out.append(model.elbo_terms(x, Step(50.0, 1.0, alpha if override is None else override),
                                    torch.Generator().manual_seed(1)))
    assert out[0].keys() == out[1].keys()
    for k in out[1]:
        torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-12, atol=1e-12)

"""What each family's objective is made of (models/distributions.Posterior.terms, objective_name), and how
vsc train reports it (trainers/report.py): the family names its own terms, log.csv and metrics.json keep their
fixed columns (trainers/log.py), and the posterior-collapse warning advises only what the run did not do."""
import math

import pytest
import torch

from vsc_cli.common.config import TrainConfig
from vsc_cli.common.registry import FAMILIES
from vsc_cli.models.schedule import Step
from vsc_cli.models.vae import VAE
from vsc_cli.trainers.log import LOG_FIELDS, TERM_COLUMNS, Log, complete_rows
from vsc_cli.trainers.report import collapse_warning, objective_line, report_lines

SMALL = dict(dim=4, hidden=(8,), backend="torch")


def metrics(**kw):
    return {"test_elbo": 100.0, "test_recon": 100.5, "test_kl_slab": 0.3, "test_kl_spike": 0.2, "test_sparsity": 0.05,
            "seconds_per_1000_iterations": 1.0, **kw}


PSEUDO = {"prior": "pseudo-inputs", "pseudo_inputs": 3}


@pytest.mark.parametrize("model,extra,kl", [("vsc", {}, {"kl_slab", "kl_spike"}), ("vae", {}, {"kl_slab"}),
                                            ("thresholded", {}, {"kl_slab"}), ("topk", {}, set()),
                                            ("vsc", PSEUDO, {"kl_slab", "kl_spike", "kl_rate"})])
def test_a_family_returns_its_own_terms_only(model, extra, kl):
    """The terms of a step are the family's declared ones (and its prior's penalties); the ELBO is recon less the
    family's terms, and the objective subtracts the prior's penalties too."""
    cfg = TrainConfig(model=model, **SMALL, **extra)
    torch.manual_seed(0)
    model_ = VAE(cfg, 16).double()
    x = torch.rand(5, 16, dtype=torch.float64)
    terms = model_.elbo_terms(x, Step.evaluation(0.5), torch.Generator().manual_seed(0))
    assert {k for k in terms if k.startswith("kl_")} == kl
    assert set(FAMILIES[model].terms) <= kl
    want = terms["recon"]
    for k in FAMILIES[model].terms:
        want = want - terms[k]
    assert torch.equal(terms["elbo"], want)
    if extra:
        assert torch.equal(terms["objective"], terms["elbo"] - terms["kl_rate"]) and "elbo_paper_prior" in terms
        assert model_.loss_terms == ("recon", "kl_slab", "kl_spike", "kl_rate")
    else:
        assert "objective" not in terms and "elbo_paper_prior" not in terms


def test_each_family_prints_its_own_terms():
    """The VSC's line is as it always was; the VAE has one KL, the thresholded family's KL is its base Gaussian's
    (recon - KL, not an ELBO), the top-k autoencoder's objective is the reconstruction alone."""
    m = metrics(test_elbo=839.931, test_recon=841.76, test_kl_slab=0.488, test_kl_spike=1.3406)
    assert objective_line(m, FAMILIES["vsc"]) == \
        "test ELBO per image: 839.93  (reconstruction 841.76, slab KL 0.49, spike KL 1.34)"
    assert objective_line(m, FAMILIES["vae"]) == "test ELBO per image: 839.93  (reconstruction 841.76, KL 0.49)"
    assert objective_line(m, FAMILIES["thresholded"]) == \
        "test recon - KL per image: 839.93  (reconstruction 841.76, KL of the base Gaussian 0.49)"
    assert objective_line(m, FAMILIES["topk"]) == "test reconstruction per image: 839.93"
    lines = report_lines(metrics(elbo_is_bound=False), TrainConfig(model="topk", **SMALL), "runs/x")
    assert lines[0] == "run: runs/x" and "slab KL" not in "\n".join(lines) and "ELBO per image" not in lines[1]
    assert "(reconstruction above is not an ELBO: an autoencoder has no KL, docs/model.md)" in lines[2]


def test_collapse_warning_advises_only_what_the_run_did_not_use():
    """KL < 1 nat per image warns; --logvar-init data is advised only to a Gaussian run whose decoder variance
    started at PyTorch's init (not to one that set it: the conv network's "data", or its resolved number)."""
    warned = collapse_warning(metrics(), TrainConfig(model="vsc", **SMALL))
    assert warned.startswith("warning: posterior collapse: the codes carry 0.50 nats per test image (KL < 1)")
    assert "--logvar-init data" in warned
    for given in ("data", -8.0):
        warned = collapse_warning(metrics(), TrainConfig(model="vsc", logvar_init=given, **SMALL))
        assert "posterior collapse" in warned and "--logvar-init" not in warned, warned
    assert "--logvar-init" not in collapse_warning(metrics(), TrainConfig(model="vsc", likelihood="bernoulli",
                                                                         **SMALL))
    assert collapse_warning(metrics(test_kl_spike=0.8), TrainConfig(model="vsc", **SMALL)) is None
    assert collapse_warning(metrics(test_kl_slab=0.4), TrainConfig(model="vae", **SMALL)) is not None
    # no KL (top-k), or one that bounds nothing (thresholded): no diagnosis
    assert collapse_warning(metrics(test_kl_slab=0.0, test_kl_spike=0.0), TrainConfig(model="topk", **SMALL)) is None
    assert collapse_warning(metrics(elbo_is_bound=False), TrainConfig(model="thresholded", **SMALL)) is None


def test_log_fills_the_fixed_columns_and_resumes_an_earlier_window(tmp_path):
    """log.csv keeps its columns for a family without a spike KL (0 there), and a log window saved by an earlier
    version (which held a VAE's zero kl_spike) goes on with the same numbers."""
    assert LOG_FIELDS == ["iteration", "c", "elbo", "recon", "kl_slab", "kl_spike", "active", "seconds"]
    assert TERM_COLUMNS == tuple(LOG_FIELDS[2:-1])
    vae_terms = {k: torch.tensor([v, v]) for k, v in (("elbo", 3.0), ("recon", 4.0), ("kl_slab", 1.0),
                                                      ("active", 1.0))}
    log = Log(tmp_path / "log.csv", None)
    log.add(vae_terms)
    log.write(1, math.inf, 0.5)
    resumed = Log(tmp_path / "log.csv", 1)
    resumed.sums, resumed.count = {"elbo": 3.0, "recon": 4.0, "kl_slab": 1.0, "kl_spike": 0.0, "active": 1.0}, 1
    resumed.add(vae_terms)
    resumed.write(2, 200.0, 1.0)
    rows = complete_rows(tmp_path / "log.csv")
    assert [(r["iteration"], r["elbo"], r["kl_slab"], r["kl_spike"]) for r in rows] == [(1, "3", "1", "0"),
                                                                                        (2, "3", "1", "0")]

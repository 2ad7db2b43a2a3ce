"""What a finished run's test-set metrics say, in words: `vsc train`'s report (each family's objective and terms
by the names the family declares: models/distributions.Posterior.terms, objective_name) and the diagnosis of
posterior collapse."""
from __future__ import annotations

from vsc_cli.common.registry import FAMILIES

COLLAPSED_KL = 1.0  # nats per image: below this the codes are (nearly) the prior for every image
# test error over training error at which a run is said to memorise (CelebA's full-width conv VSC at 20,000
# iterations: 0.404 against 0.177, 2.3x; an MLP VSC on Fashion-MNIST: about 1.0x), and the least difference
MEMORISED, MEMORISED_BY = 1.5, 0.05


def collapse_warning(metrics: dict, cfg) -> str | None:
    """The warning for a run whose codes carry almost nothing about the image (every q(z|x) is nearly the prior:
    the family's KL terms sum to less than COLLAPSED_KL nats per test image), with what to try; None otherwise,
    and for a family whose KL bounds nothing or that has none. Starting the decoder's variance at the data's is
    advised only to a Gaussian run whose variance started at PyTorch's init (logvar_init unset; the conv network
    starts it at the data's by default)."""
    family = FAMILIES[cfg.model]
    if not family.terms or not metrics.get("elbo_is_bound", True):
        return None
    kl = 0.0
    for k in family.terms:
        kl += metrics[f"test_{k}"]
    if kl >= COLLAPSED_KL:
        return None
    advice = "train longer"
    if cfg.likelihood == "gaussian" and cfg.logvar_init is None:
        advice += (", or start the decoder's variance at the data's (--logvar-init data) when the pixels' spread is "
                   "small")
    return (f"warning: posterior collapse: the codes carry {kl:.2f} nats per test image (KL < {COLLAPSED_KL:g}); "
            f"{advice} (docs/model.md)")


def objective_line(metrics: dict, family) -> str:
    """'test ELBO per image: ...  (reconstruction ..., slab KL ..., spike KL ...)': the family's objective and the
    terms it is made of."""
    line = f"test {family.objective_name} per image: {metrics['test_elbo']:.2f}"
    if not family.terms:  # the reconstruction alone
        return line
    parts = [f"reconstruction {metrics['test_recon']:.2f}",
             *(f"{label} {metrics[f'test_{k}']:.2f}" for k, label in family.terms.items())]
    return f"{line}  ({', '.join(parts)})"


def report_lines(metrics: dict, cfg, out) -> list[str]:
    """`vsc train`'s report of a finished run in `out` with config cfg: the objective and its terms, the ELBO under
    the paper's prior (a learned prior), sparsity, the time per 1,000 iterations and the collapse warning."""
    family = FAMILIES[cfg.model]
    lines = [f"run: {out}", objective_line(metrics, family)]
    if "test_elbo_paper_prior" in metrics:  # a learned prior: the ELBO above is against it
        lines.append(f"test ELBO under the paper's prior (alpha {cfg.alpha:g}): "
                     f"{metrics['test_elbo_paper_prior']:.2f}  (learned prior's rate term {metrics['test_kl_rate']:.2f})")
    if family.uses_alpha:
        lines.append(f"posterior sparsity (fraction of non-zero elements): {metrics['test_sparsity']:.3f}  "
                     f"(prior alpha {cfg.alpha:g})")
    if not metrics.get("elbo_is_bound", True):
        lines.append(f"fraction of non-zero elements in the test draws: {metrics['test_sparsity']:.3f}  "
                     f"({family.objective_name} above is not an ELBO: {family.not_elbo_because}, docs/model.md)")
    elif cfg.kl_weight != 1.0:
        lines.append(f"trained with the KL weighted by {cfg.kl_weight:g}: the objective was not the ELBO above")
    if metrics.get("train_reconstruction_error") is not None:
        parts = [f"training {metrics['train_reconstruction_error']:.3f}"]
        if metrics.get("validation_reconstruction_error") is not None:
            parts.append(f"validation {metrics['validation_reconstruction_error']:.3f}")
        parts.append(f"test {metrics['test_reconstruction_error']:.3f}")
        lines.append(f"reconstruction error of the codes (over the mean image's): {', '.join(parts)}")
    if metrics.get("best_iteration") is not None:
        stopped = metrics.get("stopped_early_at")
        lines.append(f"best checkpoint (validation ELBO {metrics['validation_elbo']:.2f}): iteration "
                     f"{metrics['best_iteration']:,}, best.safetensors; the numbers above are its"
                     + (f"; stopped early at iteration {stopped:,}" if stopped else ""))
    if metrics["seconds_per_1000_iterations"]:
        lines.append(f"time: {metrics['seconds_per_1000_iterations']:.1f} s per 1,000 iterations")
    for warning in (collapse_warning(metrics, cfg), memorisation(metrics, cfg)):
        if warning:
            lines.append(warning)
    return lines


def memorisation_advice(cfg) -> list[str]:
    """What holds a memorising run back, leaving out what it already has."""
    out = []
    if not cfg.get("validation"):
        out.append("--validation 0.1 (the best checkpoint by a held-out ELBO)")
    elif not cfg.get("patience"):
        out.append("--patience 5 (stop once the validation ELBO stops improving)")
    if not cfg.get("flip"):
        out.append("--flip")
    if not cfg.get("crop"):
        out.append("--crop 2")
    if not cfg.get("weight_decay"):
        out.append("--weight-decay 1e-4")
    return out + ["more training images"]


def memorisation(metrics: dict | None, cfg) -> str | None:
    """The warning for a run whose codes reconstruct its test images much worse than its training images (from
    metrics.json's train_ and test_reconstruction_error), with what to try; None otherwise or when unmeasured."""
    if not metrics:
        return None
    train, test = metrics.get("train_reconstruction_error"), metrics.get("test_reconstruction_error")
    if train is None or test is None or train <= 0 or test / train < MEMORISED or test - train < MEMORISED_BY:
        return None
    return (f"warning: this run memorises its training images: its codes reconstruct test images {test / train:.1f}x "
            f"as badly as training images ({test:.3f} against {train:.3f} of the mean image's error); try "
            f"{'; or '.join(memorisation_advice(cfg))}")

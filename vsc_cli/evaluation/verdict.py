"""Whether a run's codes do what a sparse code is for, in one line with what to try: `vsc sparsity` and `vsc figure`
print it, so that a collapsed or dense run is never drawn or reported without a word.

Three failures, each judged on the codes themselves (what any family's encoder gives, on the split at hand):
- collapsed: the codes keep (almost) nothing of the images: their reconstruction error is at least COLLAPSED of
  the mean image's, or no element is on in any image;
- dense: a sparse family (one with a prior alpha) switches on more than DENSE of its elements per image;
- shared: a sparse family's images all switch on (nearly) the same elements (mean Jaccard of two images' active
  sets at least SHARED): a small dense code, not each image its own few elements.
The advice names only settings the run does not already have (a run whose decoder variance already started at the
data's is not told to start it there)."""
from __future__ import annotations

import numpy as np

from vsc_cli.common.registry import FAMILIES

COLLAPSED = 0.95  # error over the mean image's: a code no better than "every image is the mean image"
DENSE = 0.3  # fraction of elements on per image; vsc's defaults give 2-10 % (docs/results/default-alpha)
# mean Jaccard of two images' active sets at which a sparse code is "the same for every image": the paper's recipe
# at alpha 0.01 gives 0.98 on Fashion-MNIST, 300 iterations of the default on own photos 0.90; the default
# recipe's finished runs 0.01-0.11
SHARED = 0.7
SAMPLE = 500  # images `vsc figure` encodes for its check (a few seconds for a conv network on one core)



def collapse_advice(cfg) -> list[str]:
    """What to try on a collapsed run, leaving out what it already has."""
    out = []
    noise = cfg.get("noise_std")
    if noise is not None:  # a fixed decoder noise: a smaller one makes detail worth coding
        out.append(f"a smaller --noise-std than {noise:g} (the KL outweighs the detail it would keep)")
    elif cfg.get("likelihood") == "gaussian" and cfg.get("logvar_init") is None:
        out.append("--logvar-init data (start the decoder's variance at the data's)")
    if cfg.iterations < 20_000:
        out.append(f"more iterations than {cfg.iterations:,}")
    if FAMILIES[cfg.model].uses_alpha and cfg.alpha < 0.2:
        out.append(f"a larger --alpha than {cfg.alpha:g} (more elements on a priori)")
    if "rate_weight" in cfg and not cfg.rate_weight:
        out.append("--rate-weight 3 (hold each element's spike rate near alpha)")
    if "spike_entropy" in cfg and not cfg.spike_entropy:
        out.append("--spike-entropy 1 (each image decides each element, on or off, instead of every unused element "
                   "sitting at gamma = alpha)")
    out += _gate_advice(cfg)
    return out or ["another --seed, or --model vae to see whether any code is learned on these data"]


def _gate_advice(cfg) -> list[str]:
    # measured on signed known-factor sets (docs/results/suite): the default recipe nearly collapsed on K = 200
    # (0.1 on per image, 3 seeds), the gate gave 2.9 on and 161 of 200 factors
    if "gate_magnitude" in cfg and not cfg.gate_magnitude:
        return ["--gate-magnitude 2 (an element on for either sign of its value; stopped signed data collapsing)"]
    return []


def dense_advice(cfg) -> list[str]:
    out = []
    if cfg.alpha > 0.1:
        out.append("--alpha 0.1 (the default recipe's)")
    elif cfg.alpha > 0.01:
        out.append("--alpha 0.01")
    if "rate_weight" in cfg and cfg.rate_weight < 10:
        out.append(f"a larger --rate-weight than {cfg.rate_weight:g}")
    return out or ["--model topk --k K (exactly K elements on per image)"]


def shared_advice(cfg) -> list[str]:
    out = []
    if cfg.iterations < 20_000:
        out.append(f"more iterations than {cfg.iterations:,} (the default recipe pre-trains the spikes for its "
                   "first 2,000, or 40 % of a shorter run)")
    if "rate_weight" in cfg and not cfg.rate_weight:
        out.append("--rate-weight 3 (hold each element's spike rate near alpha), or the default recipe (no --paper)")
    if cfg.get("gate_magnitude", 0.0) and cfg.get("pretrain", 0):
        # with the gate, spike pre-training left a signed K = 50 set's codes shared (Jaccard 0.75, 3 seeds); without
        # pre-training 0.15 (docs/results/suite)
        out.append("--pretrain 0 --pretrain-ramp 0 (with --gate-magnitude, spike pre-training can leave the codes "
                   "shared)")
    else:
        out += _gate_advice(cfg)
    return out + ["--model topk --k K (each image its own K elements)"]


def verdict(cfg, active_mean: float, error: float | None, shared: float | None = None) -> str | None:
    """The warning line for a run with config cfg whose codes switch on `active_mean` elements per image,
    reconstruct with `error` (over the mean image's; None: not measured) and whose images' active sets overlap by
    `shared` (mean Jaccard of two images'; None: not measured); None when no failure holds."""
    family = FAMILIES[cfg.model]
    if (error is not None and error >= COLLAPSED) or active_mean == 0:
        why = (f"its codes reconstruct the images {error:.2f}x as badly as the mean image does"
               if error is not None and error >= COLLAPSED else "no element is on in any image")
        return f"warning: this run collapsed: {why}; try {'; or '.join(collapse_advice(cfg))}"
    if family.uses_alpha and active_mean > DENSE * cfg.dim:
        return (f"warning: these codes are dense: {active_mean:.0f} of {cfg.dim} elements on per image (prior alpha "
                f"{cfg.alpha:g}); for a sparse code try {'; or '.join(dense_advice(cfg))}")
    if family.uses_alpha and shared is not None and shared >= SHARED:
        return (f"warning: every image switches on nearly the same elements (mean Jaccard {shared:.2f} between two "
                f"images' active sets): a small dense code, not each image its own; try "
                f"{'; or '.join(shared_advice(cfg))}")
    return None


def check_run(run, x, limit: int = SAMPLE) -> str | None:
    """verdict() of a reopened run (trainers.run.Run) on up to `limit` images of x (its `Images`): the error is
    against the mean of those images."""
    import torch

    from vsc_cli.evaluation.encoding import active_elements, encode_tensor
    from vsc_cli.evaluation.metrics import mean_jaccard

    n = min(limit, len(x))
    if n == 0:
        return None
    model = run.model
    rows = np.asarray(x[np.arange(n)], dtype=np.float64)
    param = next(model.parameters())
    xb = torch.from_numpy(rows).to(param.device, param.dtype)
    codes = encode_tensor(model, xb).numpy()
    on = active_elements(model, rows.astype(np.float32), codes["gamma"], 0.5, model.family.active)
    with torch.no_grad():
        recon = model.decoder.mean(torch.from_numpy(codes["code"]).to(param.dtype)).double().cpu().numpy()
    err_mean = float(((rows - rows.mean(0)) ** 2).sum())
    error = float(((rows - recon) ** 2).sum()) / err_mean if err_mean > 0 else None
    return verdict(run.cfg, float(on.sum(1).mean()), error, mean_jaccard(on)["all"])


"""What a --gate-magnitude run's spikes do on a known-factor set: for each of the first factors, its best-matched
element (by |corr| of mu with the factor over the last 2,000 images, the suite's test split) and, in the images
where the factor is on and where it is 0, the mean gamma, |mu| and v before the gate (logit gamma - S |mu|, the
sigmoid spike). docs/results/suite ("Why the gate turns s50 dense").

    python benchmarks/gate_probe.py RUN SET.npz [--factors 8]
"""
import argparse

import numpy as np

import vsc_cli as vsc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a vsc run folder")
    ap.add_argument("set", help="the vsc synth .npz it was trained on (images and factors)")
    ap.add_argument("--factors", type=int, default=8, help="how many factors to show")
    a = ap.parse_args(argv)
    d = np.load(a.set)
    run = vsc.load(a.run)
    s = float(run.config.get("gate_magnitude") or 0.0)
    x, f = d["images"][-2000:], d["factors"][-2000:]
    c = run.encode(x)
    g, mu = np.asarray(c.gamma, dtype=np.float64), np.asarray(c.mu, dtype=np.float64)
    v = np.log(g.clip(1e-12) / (1 - g).clip(1e-12)) - s * np.abs(mu)
    print(f"gate {s:g}; active per image {(g > 0.5).sum(1).mean():.1f}, true {(f != 0).sum(1).mean():.1f}")
    dim = mu.shape[1]
    corr = np.nan_to_num(np.corrcoef(np.c_[mu, f].T)[:dim, dim:])
    for k in range(min(a.factors, f.shape[1])):
        j, on = int(np.abs(corr[:, k]).argmax()), f[:, k] != 0
        print(f"factor {k} -> element {j} (corr {corr[j, k]:+.2f}) | factor on: gamma {g[on, j].mean():.2f} "
              f"|mu| {np.abs(mu[on, j]).mean():.2f} v {v[on, j].mean():+.2f} | factor 0: gamma {g[~on, j].mean():.2f} "
              f"|mu| {np.abs(mu[~on, j]).mean():.2f} v {v[~on, j].mean():+.2f}")


if __name__ == "__main__":
    main()

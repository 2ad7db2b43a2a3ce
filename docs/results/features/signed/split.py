import sys, numpy as np, vsc_cli
from vsc_cli.evaluation.sparsity import read_factors
from vsc_cli.evaluation.truth import abs_correlation, truth_scores
run, path = sys.argv[1:3]
r = vsc_cli.load(run)
x, _ = vsc_cli.dataset(path, "test", normalisation="01")
c = r.encode(x).code.numpy().astype(np.float64)
s = read_factors(path, "test", len(x))
halves = np.concatenate([np.maximum(s, 0), np.maximum(-s, 0)], 1)  # 2K half-factors
h = truth_scores(c, c != 0, halves)
print("matched to 2K half-factors: MCC %.3f, >=0.9: %d of %d" % (h["truth_mcc"], h["truth_recovered_09"], halves.shape[1]))
corr = abs_correlation(c, halves)
best = corr.max(0)
print("half-factors with some element >= 0.9:", int((best >= 0.9).sum()))

"""Dictionary learning + OMP on a vsc synth patches set, the yardstick for vsc's error at its L0 (needs
scikit-learn: pip install -e ".[suite]"). The same split and error as vsc sparsity: train on the own-data training
rows (every tenth image is a test image), error = the codes' mean squared error over the mean training patch's on
the test rows. Usage: python benchmarks/patches_omp.py PATCHES.npz --atoms 200 --k 3,11,29"""
import argparse
import json
import time

import numpy as np
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.linear_model import orthogonal_mp

from vsc_cli.data.sources import own_split

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--atoms", type=int, default=200)
p.add_argument("--k", default="3,11,29")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
images = np.load(a.data)["images"]
x = images.reshape(len(images), -1).astype(np.float64)
train, test = x[own_split(len(x), "train")], x[own_split(len(x), "test")]
mean = train.mean(0)
t0 = time.perf_counter()
dl = MiniBatchDictionaryLearning(n_components=a.atoms, batch_size=256, max_iter=20, random_state=a.seed,
                                 transform_algorithm="omp").fit(train - mean)
fit_s = time.perf_counter() - t0
D = dl.components_
base = ((test - mean) ** 2).sum(1).mean()
out = []
for k in map(int, a.k.split(",")):
    codes = orthogonal_mp(D.T, (test - mean).T, n_nonzero_coefs=k).T
    err = ((test - mean - codes @ D) ** 2).sum(1).mean() / base
    used = int(((codes != 0).mean(0) >= 0.01).sum())  # atoms on in >= 1 % of the patches, as vsc counts elements
    out.append({"k": k, "error": float(err), "atoms_used": used})
print(json.dumps({"data": a.data, "atoms": a.atoms, "fit_seconds": round(fit_s, 1), "results": out}, indent=1))

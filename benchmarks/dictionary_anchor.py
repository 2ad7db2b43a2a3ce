"""Classical sparse coding as an anchor beside vsc's families: scikit-learn's MiniBatchDictionaryLearning fitted on a
set's training images, its codes found by orthogonal matching pursuit with a fixed number of non-zeros, scored by the
same functions as `vsc sparsity --truth` (vsc_cli/evaluation/truth.py) on the same test split.

scikit-learn is not a dependency of vsc: `pip install scikit-learn` to run this.

    python benchmarks/dictionary_anchor.py SET.npz --atoms 200 --nonzero 5 [--train 18000] [--json OUT.json]

The images are read as `vsc train --data SET.npz --normalise 01` reads them and centred on the training mean (the
dictionary models x - mean); the reconstruction error is the codes' summed squared error per test image over the
mean training image's, as `vsc sparsity` reports it for a run.
"""
import argparse
import json
import sys
import time

import numpy as np

import vsc_cli
from vsc_cli.evaluation.truth import truth_scores
from vsc_cli.evaluation.sparsity import read_factors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="a vsc synth .npz (images and their true factors)")
    ap.add_argument("--atoms", type=int, default=200, help="dictionary atoms (the families' latent dimensions)")
    ap.add_argument("--nonzero", type=int, required=True, help="OMP's non-zero coefficients per image")
    ap.add_argument("--train", type=int, default=None, help="fit on the first N training images (default: all)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="MiniBatchDictionaryLearning's max_iter (passes over the data; default: scikit-learn's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args(argv)
    try:
        from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode
    except ImportError:
        sys.exit("scikit-learn is needed here (not by vsc): pip install scikit-learn")
    train, _ = vsc_cli.dataset(args.set, "train", normalisation="01", limit=args.train)
    test, _ = vsc_cli.dataset(args.set, "test", normalisation="01")
    train = train.reshape(len(train), -1).astype(np.float64)
    test = test.reshape(len(test), -1).astype(np.float64)
    mean = train.mean(0)
    start = time.perf_counter()
    kw = {} if args.iterations is None else {"max_iter": args.iterations}
    dl = MiniBatchDictionaryLearning(n_components=args.atoms, batch_size=256, random_state=args.seed,
                                     transform_algorithm="omp", transform_n_nonzero_coefs=args.nonzero, **kw)
    dl.fit(train - mean)
    fitted = time.perf_counter() - start
    codes = sparse_encode(test - mean, dl.components_, algorithm="omp", n_nonzero_coefs=args.nonzero)
    recon = codes @ dl.components_ + mean
    factors = read_factors(args.set, "test", len(test))
    out = truth_scores(codes, codes != 0, factors)
    out.update(model="dictionary learning + OMP (scikit-learn)", atoms=args.atoms, nonzero=args.nonzero,
               train_images=len(train), test_images=len(test), active_mean=float((codes != 0).sum(1).mean()),
               dims_used=int(((codes != 0).mean(0) >= 0.01).sum()),
               reconstruction_error=float(((test - recon) ** 2).sum() / ((test - mean) ** 2).sum()),
               seconds_fit=round(fitted, 1), seconds=round(time.perf_counter() - start, 1), set=args.set)
    text = json.dumps(out, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""vsc: Variational Sparse Coding (a VAE with a spike-and-slab prior) from the command line, and from Python:

    import vsc_cli as vsc
    run = vsc.load("runs/fmnist-vsc-d200-a0.01-s0")
    codes = run.encode(vsc.dataset("fmnist", "test")[0][:16])

(vsc_cli.pipelines.api; docs/api.md). The names load, dataset, Run and Codes are imported on first use, so that
`vsc --help` does not wait for torch.
"""

from vsc_cli.common.version import __version__

_API = ("load", "dataset", "to_pixels", "Run", "Codes", "train_config", "fit")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from vsc_cli.pipelines import api

        return getattr(api, name)
    raise AttributeError(f"module 'vsc_cli' has no attribute {name!r}")

"""vsc: Variational Sparse Coding (a VAE with a spike-and-slab prior) from the command line."""

__version__ = "0.3.0"

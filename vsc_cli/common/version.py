"""vsc's version: written into every checkpoint, codes file and report."""

__version__ = "0.3.0"

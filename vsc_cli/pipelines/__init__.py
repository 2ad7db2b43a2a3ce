"""Whole workflows over the layers below: the Python API, the paper's sweeps and their reports, benchmarks."""

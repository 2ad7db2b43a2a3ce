"""What a trained run's codes are worth: HDF5 codes, the linear classifier, sparsity, metrics, figures."""

"""Published numbers of other projects, for comparison tables (not part of the vsc library)."""

# An independent reproduction's test accuracy (%), 5000 labels, linear classifier
PUBLIC = {
    ("vae", "mnist"): (69.4, 85.5, 86.7, 86.4, 86.4, 86.6),
    ("vsc:0.01", "mnist"): (68.2, 68.3, 80.4, 85.0, 89.7, 91.8),
    ("vae", "fmnist"): (72.9, 74.6, 73.4, 74.8, 74.4, 67.1),
    ("vsc:0.01", "fmnist"): (66.9, 52.8, 68.6, 68.3, 78.3, 79.7),
}

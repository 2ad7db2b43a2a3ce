"""The datasets: built-in ones, users' own images, CelebA."""

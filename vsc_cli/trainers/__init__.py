"""Recipes, the training loop, checkpoints and torchrun."""

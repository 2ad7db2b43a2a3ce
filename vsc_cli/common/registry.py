"""The tables that map a setting's value to the class it stands for: `--model` to a family's posterior class,
`--prior` to the spike-and-slab family's prior. The only place where a family is named.

Built-in entries are "module:attribute" strings, imported on first use, so that `vsc --help` lists the names
without importing torch. `register(name, cls)` adds one at run time: a family of your own is one class and one
line, `FAMILIES.register("mine", MyPosterior, "a few words for --help")` (tests/test_families.py trains one through
the Python API). `--model`'s and `--prior`'s help are made from these tables.
"""
from __future__ import annotations

import importlib


class Registry:
    """name -> class, for the values of one setting, each with a few words for `--help`; iterates over the names
    in order."""

    def __init__(self, setting: str, built_in: dict[str, tuple[str, str]]):
        self.setting = setting
        self._entries = {name: target for name, (target, _) in built_in.items()}
        self.summaries = {name: summary for name, (_, summary) in built_in.items()}

    def register(self, name: str, obj, summary: str = "") -> None:
        self._entries[name], self.summaries[name] = obj, summary

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self.summaries.pop(name, None)

    def help(self, sep: str = ": ") -> str:
        """The names and their summaries, for the setting's help text."""
        return "; ".join(f"{name}{sep}{summary}" for name, summary in self.summaries.items())

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str):
        obj = self._entries[name]
        if isinstance(obj, str):  # a built-in, imported now
            module, _, attr = obj.partition(":")
            obj = self._entries[name] = getattr(importlib.import_module(module), attr)
        return obj


# --model: q(z|x)'s class, which says everything the model, the loop and the evaluation ask of a family
FAMILIES = Registry("model", {
    "vsc": ("vsc_cli.models.spike_slab:SpikeSlabPosterior", "spike-and-slab prior"),
    "vae": ("vsc_cli.models.gaussian:Normal", "the standard Gaussian VAE baseline (same networks)"),
    "thresholded": ("vsc_cli.models.thresholded:Thresholded",
                    "Fallah & Rozell's thresholded Gaussian posterior (ICML 2022; its objective is not an ELBO, "
                    "see docs/model.md)"),
    "topk": ("vsc_cli.models.topk:TopK", "the top-k sparse autoencoder (Makhzani & Frey 2013; Gao et al. 2024), "
             "--k elements per image"),
})

# --prior (the spike-and-slab family's): p(z)'s class, built by its from_config(cfg, pixels, posterior)
PRIORS = Registry("prior", {
    "spike-slab": ("vsc_cli.models.spike_slab:PaperPrior", "eq. 4"),
    "pseudo-inputs": ("vsc_cli.models.pseudo_inputs:PseudoInputPrior",
                      "the authors' UAI 2019 learned prior, a different model from the paper's"),
    "pseudo-mixture": ("vsc_cli.models.pseudo_inputs:PseudoMixturePrior",
                       "its components as an equal-weight mixture (ours)"),
})

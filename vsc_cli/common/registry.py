"""The tables that map a setting's value to the class it stands for: `--model` to a family's posterior class,
`--prior` to the spike-and-slab family's prior, `--network` (and `--decoder`) to a network. The only place where a
family or a network is named.

Built-in entries are "module:attribute" strings, imported on first use, so that `vsc --help` lists the names
without importing torch. `register(name, cls)` adds one at run time: a family of your own is one class and one
line, `FAMILIES.register("mine", MyPosterior, "a few words for --help")`, a network likewise in `NETWORKS`
(tests/test_families.py and tests/test_networks.py train such ones through the API and the command line). The
options' help is made from these tables, and so are the settings each class declares (its `settings`, a dict of
`config.setting(...)` fields: common/config.py gathers them, so a new class's options appear by themselves).
"""
from __future__ import annotations

import importlib


class Registry:
    """name -> class, for the values of one setting, each with a few words for `--help`; iterates over the names
    in order. A built-in entry may carry tags known without importing it (e.g. "decoder-only")."""

    def __init__(self, setting: str, built_in: dict[str, tuple]):
        self.setting = setting
        self._entries = {name: entry[0] for name, entry in built_in.items()}
        self.summaries = {name: entry[1] for name, entry in built_in.items()}
        self._tags = {name: set(entry[2:]) for name, entry in built_in.items()}
        self.version = 0  # bumped by every change: config.SETTINGS rebuilds its table when it moves

    def register(self, name: str, obj, summary: str = "") -> None:
        self._entries[name], self.summaries[name] = obj, summary
        self._tags[name] = {"decoder-only"} if getattr(obj, "decoder_only", False) else set()
        self.version += 1

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self.summaries.pop(name, None)
        self._tags.pop(name, None)
        self.version += 1

    def help(self, sep: str = ": ", names=None) -> str:
        """The names (all, or `names`) and their summaries, for the setting's help text."""
        return "; ".join(f"{name}{sep}{summary}" for name, summary in self.summaries.items()
                         if names is None or name in names)

    def tagged(self, tag: str, present: bool = True) -> "View":
        """The names with (or without) a tag, as a live view (it follows later registrations)."""
        return View(self, tag, present)

    def has_tag(self, name: str, tag: str) -> bool:
        return tag in self._tags.get(name, ())

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str):
        obj = self._entries[name]
        if isinstance(obj, str):  # a built-in, imported now
            module, _, attr = obj.partition(":")
            obj = self._entries[name] = getattr(importlib.import_module(module), attr)
        return obj


class View:
    """The names of a registry with (or without) a tag: a setting's choices (e.g. the networks that encode)."""

    def __init__(self, registry: Registry, tag: str, present: bool):
        self.registry, self.tag, self.present = registry, tag, present

    def __iter__(self):
        return iter([n for n in self.registry if self.registry.has_tag(n, self.tag) == self.present])

    def __contains__(self, name) -> bool:
        return name in self.registry and self.registry.has_tag(name, self.tag) == self.present

    def __len__(self) -> int:
        return len(list(iter(self)))


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

# --network: the encoder's network and its mirror as the decoder (models/networks.py's Network classes); a
# decoder-only one (tagged) is chosen by --decoder
NETWORKS = Registry("network", {
    "mlp": ("vsc_cli.models.networks:MLP", "fully connected, the layers of --hidden: the paper's"),
    "conv": ("vsc_cli.models.networks:Conv",
             "strided 4x4 convolutions of --channels down to 4x4, then a linear layer to the heads; the decoder its "
             "mirror; images of at least 8x8, padded to powers of two"),
    "linear": ("vsc_cli.models.networks:LinearDictionary",
               "x's mean = D z + b, a dictionary: classic sparse coding", "decoder-only"),
})

# the tables whose classes declare settings of their own, with the TrainConfig field that picks the class
VARIANTS = (FAMILIES, NETWORKS)

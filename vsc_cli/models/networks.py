"""The encoder and decoder networks, for every family: each maps flat rows to flat rows, so the rest of the model
(the heads, the fused Gaussian likelihood, centring) never sees the network's shape.

- mlp: fully connected layers (the paper's, D.1: one 400-unit hidden layer, 2x2000 for CelebA).
- conv: strided 4x4 convolutions (stride 2, padding 1, ReLU) halving the image down to 4 pixels on its shorter
  side, then one linear layer to the family's heads; the decoder is the mirror: a linear layer from z to the
  smallest feature map, then 4x4 transposed convolutions (stride 2) back up. The shape of the beta-VAE and
  disentanglement_lib networks (Higgins et al. 2017; Burgess et al. 2018) and of Fallah & Rozell's CelebA runs.
  An image whose sides are not powers of two is zero-padded (centred) up to the next ones, and the decoder's
  output cropped back, so MNIST's 28x28 runs as 32x32 with three layers. The Gaussian decoder's last layer has
  two channels per image channel (the mean and the raw log-variance of every pixel: A.1's per-pixel variance).
- linear (decoder only): x's mean = D z + b, a dictionary (classic sparse coding).

Each is a `Network` class, found by common.registry.NETWORKS.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vsc_cli.common.config import Widths, setting
from vsc_cli.common.errors import VscError

MIN_SIDE = 8  # the conv network halves at least once and ends at 4 pixels or more


def mlp(sizes) -> nn.Sequential:
    """Fully connected layers with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConvLayout:
    """How the conv network fits an image of shape (C, H, W): padded size, number of halvings, channel widths."""

    def __init__(self, shape, channels):
        c, h, w = (int(s) for s in shape)
        if min(h, w) < MIN_SIDE:
            raise VscError(f"the conv network needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels; these are "
                           f"{h}x{w} (use --network mlp, or --image-size)")
        self.c, self.h, self.w = c, h, w
        self.hp, self.wp = (1 << math.ceil(math.log2(s)) for s in (h, w))  # padded up to powers of two
        self.layers = int(math.log2(min(self.hp, self.wp))) - 2  # down to 4 pixels on the shorter side
        # one width per layer; a list shorter than the layers needed repeats its last width
        self.widths = [int(channels[min(i, len(channels) - 1)]) for i in range(self.layers)]
        self.top, self.left = (self.hp - h) // 2, (self.wp - w) // 2
        self.small = (self.hp >> self.layers, self.wp >> self.layers)  # the smallest feature map's size
        self.features = self.widths[-1] * self.small[0] * self.small[1]

    def pad(self, x):
        """Flat (B, C*H*W) rows -> (B, C, Hp, Wp) images, zero-padded around the centre."""
        x = x.reshape(-1, self.c, self.h, self.w)
        if (self.hp, self.wp) == (self.h, self.w):
            return x
        return nn.functional.pad(x, (self.left, self.wp - self.w - self.left, self.top, self.hp - self.h - self.top))

    def crop(self, y, groups: int):
        """(B, groups*C, Hp, Wp) maps -> flat (B, groups*C*H*W) rows, group-major (the means, then the log-variances)."""
        if (self.hp, self.wp) != (self.h, self.w):
            y = y[:, :, self.top:self.top + self.h, self.left:self.left + self.w]
        return y.reshape(y.shape[0], groups * self.c * self.h * self.w)


class ConvEncoder(nn.Module):
    """Flat images (B, C*H*W) -> (B, outputs): the strided convolutions, then one linear layer (`head`) to the heads."""

    def __init__(self, layout: ConvLayout, outputs: int):
        super().__init__()
        self.layout = layout
        convs, before = [], layout.c
        for width in layout.widths:
            convs += [nn.Conv2d(before, width, 4, stride=2, padding=1), nn.ReLU()]
            before = width
        self.convs = nn.Sequential(*convs)
        self.head = nn.Linear(layout.features, outputs)

    def forward(self, x):
        return self.head(self.convs(self.layout.pad(x)).flatten(1))


class ConvDecoder(nn.Module):
    """z (B, J) -> flat (B, groups*C*H*W): a linear layer to the smallest feature map, then transposed convolutions;
    the last has groups*C channels (groups = 2 for the Gaussian's mean and raw log-variance)."""

    def __init__(self, layout: ConvLayout, dim: int, groups: int):
        super().__init__()
        self.layout, self.groups = layout, groups
        self.fc = nn.Linear(dim, layout.features)
        ups, widths = [], layout.widths[::-1]
        for a, b in zip(widths[:-1], widths[1:]):
            ups += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
        self.ups = nn.Sequential(*ups)
        self.last = nn.ConvTranspose2d(widths[-1], groups * layout.c, 4, stride=2, padding=1)

    def forward(self, z):
        h = torch.relu(self.fc(z)).reshape(-1, self.layout.widths[-1], *self.layout.small)
        return self.layout.crop(self.last(self.ups(h)), self.groups)

    def logvar_bias(self):
        """The bias entries of the log-variance outputs (the last layer's second half of channels)."""
        return self.last.bias[self.layout.c:]


class Network:
    """What a network is (common.registry.NETWORKS maps `--network` and a decoder-only `--decoder` to these
    classes; nothing else names one). Each builds both halves for a run's config and says where their parts are:

      settings        its own settings (config.setting fields), `vsc train --help` lists them under `title`
      needs_shape     whether it needs the images' (C, H, W), not only their number of pixels
      decoder_only    True for a decoder-only network (chosen by --decoder)
      encoder, decoder, heads_layer, logvar_bias: its builders, the encoder's last linear layer (whose outputs are
                      the family's heads), the decoder's log-variance bias entries (the Gaussian's start)
      describe        a few words for messages ("hidden 400")
      smaller         the setting that makes it about half as wide, for the advice to a long run (None: none)
      defaults        the values it trains with on a data set when they are not given (recipes.resolve)
      chosen_for      whether a new run on such data gets it when --network is not given (recipes.default_network)
    """

    title = ""
    settings: dict = {}
    needs_shape = False
    decoder_only = False

    @classmethod
    def encoder(cls, cfg, shape, pixels: int, outputs: int) -> nn.Module:
        """Flat images (B, pixels) -> (B, outputs), ending in the heads' linear layer (heads_layer)."""
        raise NotImplementedError

    @classmethod
    def decoder(cls, cfg, shape, pixels: int, groups: int) -> nn.Module:
        """z (B, dim) -> (B, groups * pixels), group-major (means, then raw log-variances)."""
        raise NotImplementedError

    @staticmethod
    def heads_layer(encoder: nn.Module) -> nn.Linear:
        return encoder[-1]

    @staticmethod
    def logvar_bias(decoder: nn.Module, pixels: int) -> torch.Tensor:
        """The bias entries of the decoder's log-variance outputs (the second half of its last layer's)."""
        return decoder[-1].bias[pixels:]

    @classmethod
    def describe(cls, cfg) -> str:
        return cls.title or cls.__name__

    @classmethod
    def smaller(cls, cfg) -> str | None:
        return None

    @classmethod
    def defaults(cls, data: str) -> dict:
        return {}

    @classmethod
    def chosen_for(cls, data: str, shape) -> bool:
        return False


class MLP(Network):
    """Fully connected layers (the paper's, D.1: one 400-unit hidden layer, 2x2000 for CelebA)."""

    title = "MLP network"
    settings = {
        "hidden": setting(
            (400,), "Hidden layer widths of encoder and decoder, e.g. 400 or 2000,2000 (paper D.1).", Widths(),
            "model", shown_default="2000,2000 for celeba, 400 otherwise"),
    }

    @classmethod
    def encoder(cls, cfg, shape, pixels, outputs):
        return mlp([pixels, *cfg.hidden, outputs])

    @classmethod
    def decoder(cls, cfg, shape, pixels, groups):
        return mlp([cfg.dim, *cfg.hidden, groups * pixels])

    @classmethod
    def describe(cls, cfg):
        return f"hidden {','.join(map(str, cfg.hidden))}"

    @classmethod
    def smaller(cls, cfg):
        half = [max(w // 2, 16) for w in cfg.hidden]
        return None if list(half) == list(cfg.hidden) else f"--hidden {','.join(map(str, half))}"

    @classmethod
    def defaults(cls, data):
        # paper D.1: two 2000-unit layers for CelebA, one of 400 otherwise; CelebA's 2x2000 network at Adam's 1e-3
        # (and at the paper's whole range, 1e-3 to 1e-2) collapses even as a plain VAE, at 1e-4 it learns codes
        # (docs/recipes.md)
        return {"hidden": (2000, 2000), "lr": 1e-4} if data == "celeba" else {}


class Conv(Network):
    """Strided 4x4 convolutions down to 4x4, a linear layer to the heads; the decoder its mirror (module docstring)."""

    title = "Conv network"
    needs_shape = True
    settings = {
        "channels": setting(
            (32, 64, 128, 256), "Channels of its layers, from the image down (the last repeated when the image needs "
            "more layers).", Widths(), "model", settable=True, shown_default="32,64,128,256"),
    }
    FROM_SIDE = 32  # own images of this many pixels a side or more get it (and colour ones of any size from 8)
    CELEBA_SIZE = 64  # CelebA's side with it (the MLP keeps the paper's 32x32)

    @classmethod
    def encoder(cls, cfg, shape, pixels, outputs):
        return ConvEncoder(ConvLayout(shape, cfg.channels), outputs)

    @classmethod
    def decoder(cls, cfg, shape, pixels, groups):
        return ConvDecoder(ConvLayout(shape, cfg.channels), cfg.dim, groups)

    @staticmethod
    def heads_layer(encoder):
        return encoder.head

    @staticmethod
    def logvar_bias(decoder, pixels):
        return decoder.logvar_bias()

    @classmethod
    def describe(cls, cfg):
        return f"conv network {','.join(map(str, cfg.channels))}"

    @classmethod
    def smaller(cls, cfg):
        half = [max(c // 2, 8) for c in cfg.channels]
        return None if list(half) == list(cfg.channels) else f"--channels {','.join(map(str, half))}"

    @classmethod
    def defaults(cls, data):
        # the decoder's log-variance starts at the data's: from PyTorch's init (sigma about 1, fifty times the
        # unit-norm pixels' spread) the conv VAE's posterior collapses on Fashion-MNIST (KL 0.05, chance accuracy);
        # CelebA at 64x64. Adam's 1e-3 is kept on CelebA (docs/results/celeba-conv)
        return {"logvar_init": "data", **({"image_size": cls.CELEBA_SIZE} if data == "celeba" else {})}

    @classmethod
    def chosen_for(cls, data, shape):
        """Photographs (CelebA, own colour images) and own images of 32 pixels or more a side; not MNIST and
        Fashion-MNIST, where the paper's MLP does as well at a tenth of the time (docs/training.md)."""
        if shape is None:
            return data == "celeba"
        c, h, w = shape
        return min(h, w) >= MIN_SIDE and (c == 3 or min(h, w) >= cls.FROM_SIDE)


class LinearDictionary(Network):
    """Decoder only: x's mean = D z + b, a dictionary (classic sparse coding; Fallah & Rozell's experiment)."""

    title = "Linear dictionary"
    decoder_only = True

    @classmethod
    def decoder(cls, cfg, shape, pixels, groups):
        return mlp([cfg.dim, groups * pixels])

    @classmethod
    def describe(cls, cfg):
        return "linear decoder"

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
"""
from __future__ import annotations

import math

import torch
from torch import nn

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


def encoder(network: str, shape, pixels: int, hidden, channels, outputs: int) -> nn.Module:
    """The encoder network: flat images (B, pixels) -> (B, outputs), ending in the heads' linear layer
    (heads_layer)."""
    if network == "conv":
        return ConvEncoder(ConvLayout(shape, channels), outputs)
    return mlp([pixels, *hidden, outputs])


def heads_layer(encoder: nn.Module) -> nn.Linear:
    """The encoder's last layer, whose outputs are the family's heads (Posterior.init_encoder sets its start)."""
    return encoder.head if isinstance(encoder, ConvEncoder) else encoder[-1]


def decoder(network: str, shape, dim: int, hidden, channels, pixels: int, groups: int) -> nn.Module:
    """The decoder network: z (B, dim) -> (B, groups * pixels), group-major (means, then raw log-variances)."""
    if network == "conv":
        return ConvDecoder(ConvLayout(shape, channels), dim, groups)
    return mlp([dim, groups * pixels] if network == "linear" else [dim, *hidden, groups * pixels])

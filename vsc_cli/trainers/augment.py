"""Augmentation of a training batch for small image sets (`--flip`, `--crop`): a new draw per image and step from
the run's own generator (saved in the checkpoint, so a resumed run draws the same), applied to the flat rows
(B, C*H*W) the networks see. Neither is in the paper; both are off unless asked for (docs/training.md).

- flip: each image mirrored left-right with probability 1/2;
- crop P: each image shifted by (dy, dx), each uniform in -P..P: the image padded by P pixels with copies of its
  edge pixels, then the original size cut out at offset (P + dy, P + dx). The edge copies change an image's L2
  norm, so with --normalise unit the rows are scaled back to norm 1 (the paper's D.2 holds for every image seen).
"""
from __future__ import annotations

import torch


def augments(cfg) -> bool:
    """Whether a run augments its training batches."""
    return bool(cfg.flip or cfg.crop)


def augment(xb: torch.Tensor, shape, cfg, gen: torch.Generator) -> torch.Tensor:
    """The batch xb (B, C*H*W) of images of shape (C, H, W), flipped and shifted as cfg says, with draws from gen
    (a CPU generator: the same draws on every device)."""
    if not augments(cfg):
        return xb
    c, h, w = shape
    b = xb.shape[0]
    x = xb.reshape(b, c, h, w)
    if cfg.flip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.crop:
        p = int(cfg.crop)
        shifts = torch.randint(-p, p + 1, (b, 2), generator=gen).to(x.device)
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode="replicate")
        rows = (torch.arange(h, device=x.device)[None, :] + p + shifts[:, :1])  # (B, H): the rows cut out
        cols = (torch.arange(w, device=x.device)[None, :] + p + shifts[:, 1:])  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if cfg.normalisation == "unit":
            flat = x.reshape(b, -1)
            norms = flat.norm(dim=1, keepdim=True)
            x = flat / torch.where(norms > 0, norms, torch.ones_like(norms))  # an all-black image stays zero
    return x.reshape(b, -1).contiguous()

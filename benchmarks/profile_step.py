"""Where a vsc training step's time goes: torch.profiler over the step `vsc bench --train` times.

    taskset -c 0 python benchmarks/profile_step.py [gaussian|bernoulli|conv]

One thread, numba backend, random unit-norm images: the MLP 784-400-200 at batch 256 (gaussian, bernoulli:
30 warm-up steps, then 40 profiled), or (conv) the conv network on 64x64 colour images, 256 dims, batch 64,
Gaussian (5 warm-up steps, 10 profiled). Prints self CPU time per step of the 30 costliest operators and the share
of the matrix products and convolutions (aten::mm, aten::addmm and the convolution operators: forward, weight and
input gradients).
"""
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE
from vsc_cli.models.schedule import Step
from vsc_cli.trainers.log import Log
from vsc_cli.trainers.state import make_optimizer
from vsc_cli.trainers.train import training_step

torch.set_num_threads(1)
kind = sys.argv[1] if len(sys.argv) > 1 else "gaussian"
conv = kind == "conv"
batch, pixels = (64, 3 * 64 * 64) if conv else (256, 784)
g = torch.Generator().manual_seed(0)
x = torch.rand(batch * 8, pixels, generator=g)
x = x / x.norm(dim=1, keepdim=True)
batches = [x[i * batch:(i + 1) * batch] for i in range(8)]
torch.manual_seed(0)
if conv:
    cfg = TrainConfig(dim=256, batch_size=64, backend="numba", network="conv", image_shape=[3, 64, 64])
else:
    cfg = TrainConfig(dim=200, batch_size=256, backend="numba", likelihood=kind, hidden=(400,))
model = VAE(cfg, pixels)
opt = make_optimizer(model, cfg.lr)
noise = torch.Generator().manual_seed(1)
log = Log(None, None)
step = Step(120.0, 1.0, cfg.alpha)  # mid-training: the slab on, c between 50 and 200
for i in range(5 if conv else 30):
    training_step(model, model, opt, batches[i % 8], step, noise, log, i + 1, None)
N = 10 if conv else 40
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for i in range(N):
        training_step(model, model, opt, batches[i % 8], step, noise, log, i + 1, None)
        if log.count >= 100:
            log.reset()
rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
total = sum(e.self_cpu_time_total for e in rows)
print(f"total self CPU per step: {total / N / 1000:.2f} ms")
COMPUTE = ("aten::mm", "aten::addmm", "aten::convolution_backward", "aten::_convolution", "aten::mkldnn_convolution")
matmul = sum(e.self_cpu_time_total for e in rows if e.key in COMPUTE)
print(f"matrix products and convolutions: {matmul / N / 1000:.2f} ms ({100 * matmul / total:.1f}%); the rest: "
      f"{(total - matmul) / N / 1000:.2f} ms")
for e in rows[:30]:
    print(f"{e.key:55s} {e.self_cpu_time_total / N / 1000:7.3f} ms  calls/step {e.count / N:5.1f}")

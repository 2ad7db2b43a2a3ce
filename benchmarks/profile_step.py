"""Where a vsc training step's time goes: torch.profiler over the step `vsc bench --train` times.

    taskset -c 0 python benchmarks/profile_step.py [gaussian|bernoulli]

One thread, 784-400-200, batch 256, random unit-norm images, numba backend; 30 warm-up steps, then 40
profiled. Prints self CPU time per step of the 30 costliest operators and the share of the matrix
products (aten::mm and aten::addmm: forward, weight and input gradients).
"""
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from vsc_cli.common.config import TrainConfig
from vsc_cli.models.vae import VAE
from vsc_cli.models.schedule import Step
from vsc_cli.trainers.train import _Log, make_optimizer, training_step

torch.set_num_threads(1)
likelihood = sys.argv[1] if len(sys.argv) > 1 else "gaussian"
g = torch.Generator().manual_seed(0)
x = torch.rand(256 * 8, 784, generator=g)
x = x / x.norm(dim=1, keepdim=True)
batches = [x[i * 256:(i + 1) * 256] for i in range(8)]
torch.manual_seed(0)
cfg = TrainConfig(dim=200, batch_size=256, backend="numba", likelihood=likelihood, hidden=(400,))
model = VAE(cfg, 784)
opt = make_optimizer(model, cfg.lr)
noise = torch.Generator().manual_seed(1)
log = _Log(None, None)
step = Step(120.0, 1.0, cfg.alpha)  # mid-training: the slab on, c between 50 and 200
for i in range(30):
    training_step(model, model, opt, batches[i % 8], step, noise, log, i + 1, None)
N = 40
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for i in range(N):
        training_step(model, model, opt, batches[i % 8], step, noise, log, i + 1, None)
        if log.count >= 100:
            log.reset()
rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
total = sum(e.self_cpu_time_total for e in rows)
print(f"total self CPU per step: {total / N / 1000:.2f} ms")
matmul = sum(e.self_cpu_time_total for e in rows if e.key in ("aten::mm", "aten::addmm"))
print(f"matrix products: {matmul / N / 1000:.2f} ms ({100 * matmul / total:.1f}%); the rest: "
      f"{(total - matmul) / N / 1000:.2f} ms")
for e in rows[:30]:
    print(f"{e.key:55s} {e.self_cpu_time_total / N / 1000:7.3f} ms  calls/step {e.count / N:5.1f}")

"""The per-network PyTorch training loop of ``bench_train.py``: what a user writes without the engine.

Benchmark only (``python3 -m pip install torch``, run on the CPU; torch is not a dependency of
sweep). ``bench_train.py`` runs it in a subprocess, so that torch's threads never run beside
JAX's, with the networks' initial parameters, the data and the mini-batch schedule in an .npz
file; each network is then an ``nn.Module`` of ``nn.Linear`` layers (relu between them, the
readout last) trained for every step by ``zero_grad``, ``cross_entropy``, ``backward`` and
``SGD.step``. It prints one JSON line: the wall and CPU seconds of the whole loop over the
networks (their modules and optimizers built inside it, the data loaded before), and each network's final
mini-batch loss, which ``bench_train.py`` compares with its own loops' as a check that the work
is the same.

    python3 scripts/bench_train_torch.py FILE.npz --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional


class MLP(nn.Module):
    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]):
        super().__init__()
        self.layers = nn.ModuleList()
        for w, b in zip(weights, biases):
            layer = nn.Linear(*w.shape)
            with torch.no_grad():  # sweep's W is (fan_in, fan_out), z = x W + b; torch's is (out, in)
                layer.weight.copy_(torch.from_numpy(w.T.copy()))
                layer.bias.copy_(torch.from_numpy(b))
            self.layers.append(layer)

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="the .npz that bench_train.py writes")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    f = np.load(a.data)
    x, y, rows, lr = torch.from_numpy(f["x"]), torch.from_numpy(f["y"]).long(), torch.from_numpy(f["rows"]).long(), float(f["lr"])
    networks = [([f[f"w{i}_{l}"] for l in range(int(f["layers"]))], [f[f"b{i}_{l}"] for l in range(int(f["layers"]))])
                for i in range(int(f["networks"]))]

    def train(weights, biases, steps):
        model = MLP(weights, biases)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for t in range(steps):
            opt.zero_grad()
            loss = functional.cross_entropy(model(x[rows[t]]), y[rows[t]])
            loss.backward()
            opt.step()
        return float(loss)

    train(*networks[0], 3)  # warm up the allocator and the kernels
    start, cpu = time.perf_counter(), time.process_time()
    losses = [train(w, b, len(rows)) for w, b in networks]
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "final_losses": losses, "threads": a.threads, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

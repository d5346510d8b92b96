"""CPU cost of ``exclude_seen`` per SASRec training step, interleaved in one process.

ML-100k ``temporal-user-80-20`` training windows (max_len 50, batch 64, target_window 10), one
torch thread; 3 rounds of 15 steps with and without the mask, process CPU seconds summed.

    nice -n 10 python benchmarks/sequential_exclude_seen_cost.py
"""

from __future__ import annotations

import os
import time

import torch

from recforge.data.sequences import Sequences
from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.sasrec import SASRecNet
from recforge.models.sequential import NextItemLoss


def main() -> None:
    torch.set_num_threads(1)
    split = get_protocol("temporal-user-80-20").split(load_dataset("ml-100k"))
    inputs, targets = Sequences.from_interactions(split.train).windows(50)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    torch.manual_seed(0)
    n_items = split.train.n_items
    net = SASRecNet(n_items, 64, 1, 2, 50, 0.2)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    losses = {xs: NextItemLoss("ce", n_items, window=10, exclude_seen=xs) for xs in (False, True)}
    cpu = {False: 0.0, True: 0.0}
    for _ in range(3):
        for xs, objective in losses.items():
            t = time.process_time()
            for b in range(0, 64 * 15, 64):
                loss = objective.loss(net, {"input": x[b : b + 64], "target": y[b : b + 64]})
                opt.zero_grad()
                loss.backward()
                opt.step()
            cpu[xs] += time.process_time() - t
    print(
        f"CPU s without {cpu[False]:.2f}, with exclude_seen {cpu[True]:.2f}, "
        f"ratio {cpu[True] / cpu[False]:.3f}, load {[round(v, 2) for v in os.getloadavg()]}"
    )


if __name__ == "__main__":
    main()

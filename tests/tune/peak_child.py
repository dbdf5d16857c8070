"""Child process of test_memory: the measured peak memory of one real training step of a model file.

    python tests/tune/peak_child.py MODEL.py BATCH AMP(0|1) CHECKPOINTING(0|1)

Prints JSON {"peak_mb"}: the peak resident memory during forward + backward (meter.PeakMemory, sampled
every millisecond) above the level just before, after a warm-up step at batch 1 and with the gradients
freed (`set_to_none`), as the model's own learn() leaves them. Run with MALLOC_MMAP_THRESHOLD_=65536 so
that freed tensors leave resident memory at once.
"""
import json
import sys

import torch

from ab.gpt.brute.fract.util.meter import PeakMemory
from ab.gpt.brute.fract.trial.model_file import import_isolated


def main(path: str, batch: int, amp: bool, ckpt: bool) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = import_isolated(path).Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9}, torch.device("cpu"))
    net.amp, net.grad_checkpoint = amp, ckpt
    net.global_drop = 0.0  # all columns: the step the estimate describes
    for b in net.blocks:
        b.local_drop = 0.0
    net.train()
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(10, (batch,))
    torch.nn.functional.cross_entropy(net(x[:1]), y[:1]).backward()  # warm-up: kernels, thread pools
    for p in net.parameters():
        p.grad = None
    with PeakMemory("cpu", interval_s=0.001) as mem:
        base = mem.peak
        torch.nn.functional.cross_entropy(net(x), y).backward()
    return {"peak_mb": (mem.peak - base) / 2**20}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1")))

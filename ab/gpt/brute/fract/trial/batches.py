"""CIFAR-10 batches inside a trial: a split held on the training device, served as normalised batches.

Fast path: the whole split stays a uint8 tensor (N, 3, 32, 32) on the training device; each batch is
flipped (transform `norm_flip`), scaled to [0, 1] and normalised with nn-dataset's CIFAR-10 constants as
tensor operations, in the same order of operations as torchvision's ToTensor + Normalize. No DataLoader and
no per-image Python: on CUDA the split is copied to the GPU once per trial process (CIFAR-10: 150 MB) and
every batch is gathered, flipped and normalised there. Per image it draws the same random number
torchvision's flip would (`TensorCifar.draws`), so both paths flip the same images for one seed. As
nn-dataset's loader does, the test split gets the same transform as the training split (flip included);
flips are drawn from a seeded generator, so evaluation is reproducible.
"""
from __future__ import annotations

import numpy as np
import torch


def load_split(prepared: dict, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N,3,32,32), labels int64 (N,)) of 'train' or 'test'; the first `limit` images."""
    x = np.load(prepared[f"{split}_x"], mmap_mode="r", allow_pickle=False)
    y = np.load(prepared[f"{split}_y"], mmap_mode="r", allow_pickle=False)
    n = len(x) if not limit else min(limit, len(x))
    return torch.from_numpy(np.array(x[:n])), torch.from_numpy(np.array(y[:n]))


class TensorCifar:
    """One split held as uint8 on the device; `batches()` yields normalised float batches."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, flip: bool,
                 device: torch.device | str = "cpu", channels_last: bool = False) -> None:
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.flip = flip
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch: int) -> int:
        return -(-len(self) // batch)

    def transform(self, x: torch.Tensor, flip_mask: torch.Tensor | None) -> torch.Tensor:
        """uint8 (B,3,H,W) -> float, as RandomHorizontalFlip + ToTensor + Normalize would give."""
        if flip_mask is not None:
            x = torch.where(flip_mask.view(-1, 1, 1, 1), x.flip(3), x)
        x = x.float().div_(255).sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def draws(self, generator: torch.Generator, shuffle: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(order, flips) of one pass, from `generator` (a CPU generator): the permutation first, then one
        uniform number per image in that order, flipped when below 0.5. That is the stream torchvision's
        RandomHorizontalFlip draws from (`torch.rand(1) < 0.5` per image, in loading order), so a DataLoader over
        nn-dataset's `norm_flip` whose global generator continues from here flips exactly the same images."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        flips = (torch.rand(n, generator=generator) < 0.5) if self.flip else None
        return order, flips

    def batches(self, batch: int, generator: torch.Generator, shuffle: bool):
        """Yields (inputs, labels) on the device; order and flips come from `generator` (`draws`)."""
        order, flips = self.draws(generator, shuffle)
        order = order.to(self.device)
        flips = flips.to(self.device) if flips is not None else None
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            mask = flips[start:start + batch] if flips is not None else None
            yield self.transform(self.images.index_select(0, idx), mask), self.labels.index_select(0, idx)

"""Batches for training and evaluation, with augmentation done per batch on the device.

In-memory splits live on the training device as one uint8 tensor: a batch is one gather,
one conversion and a few whole-batch ops — no per-sample Python, no PIL in the hot loop.
Image folders are decoded by DataLoader workers into uint8 batches that then take the same
path. The data order of epoch e is a permutation seeded by (seed, e), so a resumed run (or
another process of a distributed run) sees exactly the same batches. Nothing here draws from
torch's global generator: it drives dropout, and a draw that a resumed run makes and the
uninterrupted run does not (or at another moment) would shift every later dropout mask.
"""

from __future__ import annotations

import re
from typing import Iterator

import torch
import torch.nn.functional as F

from netspec.data import Data, DataError, Split
from netspec.preprocess import Normalisation
from netspec.train.config import Augment


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s data order (and its DataLoader's worker seeds)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=epoch_generator(seed, epoch))


class Batches:
    """Iterates one split in global batches; each process takes its slice of every batch."""

    def __init__(self, data: Data, split: str, batch_size: int, device: torch.device, augment: Augment | None = None,
                 normalize: bool = True, rank: int = 0, world: int = 1, workers: int = 0, channels_last: bool = False):
        self.source = data.train if split == "train" else data.val
        self.training = split == "train"
        self.batch_size, self.device, self.rank, self.world = batch_size, device, rank, world
        self.augment = augment if self.training else None
        self.normalisation = Normalisation(data.mean, data.std, normalize)
        coefficients = self.normalisation.coefficients()  # netspec.preprocess: the numbers inference uses
        self.coefficients = (None if coefficients is None
                             else tuple(torch.from_numpy(c).to(device) for c in coefficients))
        self.workers = workers
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if isinstance(self.source, Split):
            self.images = self.source.images.to(device)
            self.labels = self.source.labels.to(device)

    def __len__(self) -> int:
        """Steps per epoch (training drops the last partial batch, so every step has equal size)."""
        n = len(self.source)
        return n // self.batch_size if self.training else -(-n // self.batch_size)

    def epoch(self, epoch: int, seed: int, start_step: int = 0,
              generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x float normalised, y) per step from `start_step`; `generator` draws the augmentation."""
        n = len(self.source)
        order = epoch_order(n, seed, epoch) if self.training else torch.arange(n)
        if isinstance(self.source, Split):
            for index in order.to(self.device).split(self.batch_size)[start_step:len(self)]:
                yield self._batch(self.images[index], self.labels[index], generator)
        else:
            chunks = order.split(self.batch_size)[start_step:len(self)]
            for images, labels in self._stream(chunks, epoch_generator(seed, epoch)):
                yield self._batch(images.to(self.device, non_blocking=True),
                                  labels.to(self.device, non_blocking=True), generator)

    def _stream(self, chunks: list[torch.Tensor], generator: torch.Generator):
        """Folder images: decoded by DataLoader workers, batch by batch, in our order. The
        iterator draws its workers' base seed from `generator`, never the global one."""
        from torch.utils.data import DataLoader

        def collate(items):
            return torch.stack([img for img, _ in items]), torch.as_tensor([int(lab) for _, lab in items])

        loader = DataLoader(self.source, batch_sampler=[c.tolist() for c in chunks], num_workers=self.workers,
                            collate_fn=collate, pin_memory=self.device.type == "cuda", generator=generator)
        try:
            yield from loader
        except DataError as e:  # re-raised from a worker with its traceback in the text: keep the message
            found = re.search(r"error: data: ([^\n]*)", str(e))
            raise DataError(found.group(1) if found else str(e).splitlines()[0]) from None

    def _batch(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None):
        if self.augment is not None:
            images = augment_batch(images, self.augment, generator)  # on uint8: a quarter of the bytes
        lo, hi = self._slice(len(labels))
        images, y = images[lo:hi], labels[lo:hi]
        x = images.contiguous(memory_format=self.memory_format).float()
        return self.normalisation.apply_(x, self.coefficients), y

    def _slice(self, size: int) -> tuple[int, int]:
        """This process's share of a global batch (all of it when not distributed): contiguous
        shares whose sizes differ by at most one, so every sample goes to exactly one process
        (the trainer weights each process's loss by its share)."""
        if self.world == 1:
            return 0, size
        return self.rank * size // self.world, (self.rank + 1) * size // self.world


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, for a whole batch at once.

    Random numbers are drawn on the CPU for the whole global batch, so every process of a
    distributed run and a resumed run draws the same ones.
    """
    batch, _, height, width = images.shape
    if augment.pad:
        pad = augment.pad
        offsets = _to_device(torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator), images.device)
        padded = F.pad(images, (pad, pad, pad, pad))                           # B×C×(H+2p)×(W+2p)
        windows = padded.unfold(2, height, 1).unfold(3, width, 1)              # B×C×(2p+1)×(2p+1)×H×W, a view
        n = torch.arange(batch, device=images.device)
        images = windows[n, :, offsets[:, 0], offsets[:, 1]]                   # B×C×H×W
    if augment.flip:
        flip = _to_device(torch.rand(batch, generator=generator) < 0.5, images.device)
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy without making the host wait for the GPU (a no-op on the CPU)."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)

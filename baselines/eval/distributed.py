"""Running the benchmark scripts under PyTorch's launcher (`torchrun --nproc_per_node N ...`, multi-node too).

Sharding is by whole batches: with batch size B the rows [b B, (b + 1) B) form batch b, and process `rank` of
`world` takes the batches b with b mod world = rank. Every batch is therefore composed exactly as in a
single-process run, so its numbers are the same; the per-image records of all processes are gathered and put
back in dataset order before anything is summed or averaged, so the merged result equals the single process's.
The backend is NCCL on GPUs and gloo on CPUs; without torchrun's environment nothing is initialised.
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as torch_dist


@dataclass
class Dist:
    """This process's place: rank, world size and device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owned: bool = False

    @property
    def active(self):
        return self.world > 1

    def barrier(self):
        if self.active:
            torch_dist.barrier()

    def gather(self, value):
        """Every process's `value` (any picklable object), in rank order, on every process."""
        if not self.active:
            return [value]
        values = [None] * self.world
        torch_dist.all_gather_object(values, value)
        return values

    def close(self):
        """End the process group if `setup` started it."""
        if self.owned and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def setup(device=None):
    """Dist for this process: `device` (default cuda when available, else cpu); under torchrun the local GPU.

    A process group that the caller already started is used as it is (and left open by `close`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if world == 1:
        return Dist(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owned = not torch_dist.is_initialized()
    if owned:
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=torch_dist.get_rank(), world=torch_dist.get_world_size(), device=device, owned=owned)


def shard(num_rows, batch_size, rank=0, world=1):
    """Batch numbers of this process: b in [0, ceil(num_rows / batch_size)) with b mod world = rank."""
    return list(range(rank, -(-num_rows // batch_size), world))


def batch_rows(batches, batch_size, num_rows):
    """Row numbers of the given batches, in order (batch b = rows [b B, min((b + 1) B, num_rows)))."""
    return [row for b in batches for row in range(b * batch_size, min((b + 1) * batch_size, num_rows))]


def merge(dist, rows, records):
    """Gather (row numbers, per-row record array) from every process; returns the records ordered by row."""
    parts = [part for part in dist.gather((list(rows), records)) if len(part[0])]
    order = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in parts])
    stacked = np.concatenate([np.asarray(rec) for _, rec in parts])
    return stacked[np.argsort(order, kind="stable")]

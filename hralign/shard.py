"""Shard inference work (labelling, feature extraction) over the processes of a launcher.

Under ``torchrun`` or ``accelerate launch`` each process takes a contiguous share of the work
units (Accelerate's ``PartialState`` gives the rank, the world size and the barrier), writes its
results to a part file, and the main process concatenates the parts in rank order, which is the
order of the units, into the one output. Because units are assigned whole and each unit's result
does not depend on which process computed it (see :func:`hralign.encoders.clips.encode_clips`),
N processes write the same file as one (docs/design.md, "Inference devices and sharding").
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from hralign.atomic import atomic_path
from hralign.errors import HRAlignError


@dataclass(frozen=True)
class Shard:
    """This process's place in the run: ``rank`` of ``world`` processes (0 of 1 without a launcher)."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise HRAlignError(f"shard: rank {self.rank} of world size {self.world} is not a valid process index")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this process's contiguous share of ``n`` units (sizes differ by at most 1)."""
        if n < 0:
            raise HRAlignError(f"shard: the number of units should be >= 0 but is {n}")
        base, extra = divmod(n, self.world)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def current_shard() -> Shard:
    """The shard of this process: from Accelerate's state under a launcher, else 0 of 1.

    ``PartialState`` joins the process group the launcher described (env://) once per process and
    is shared with an ``Accelerator`` the process already made (a trainer's). Made here first, it
    uses NCCL when CUDA is present and gloo otherwise: Accelerate treats a CPU-only machine as
    one process unless told ``cpu=True``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    from accelerate import PartialState  # only under a launcher: it initialises the process group

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != int(os.environ["WORLD_SIZE"]):
        raise HRAlignError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but Accelerate sees {state.num_processes} "
                           "process(es); launch with torchrun or accelerate launch")
    return Shard(rank=state.process_index, world=state.num_processes)


def gather_parts(arrays: dict[str, np.ndarray], workdir: str | os.PathLike, shard: Shard) -> dict[str, np.ndarray] | None:
    """Concatenate every process's ``arrays`` (along axis 0, in rank order) on the main process.

    Each process writes its part atomically to ``workdir/part-<rank>.safetensors``; after a
    barrier the main process reads all parts, removes ``workdir`` and returns the merged arrays;
    other processes return None. Every process must pass the same keys. Alone, ``arrays`` is
    returned as is (nothing written).
    """
    if shard.world == 1:
        return arrays
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(work / f"part-{shard.rank}.safetensors", suffix=".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    shard.barrier()
    merged = None
    if shard.is_main:
        parts = [load_file(str(work / f"part-{r}.safetensors")) for r in range(shard.world)]
        keys = set(parts[0])
        for r, p in enumerate(parts):
            if set(p) != keys:
                raise HRAlignError(f"{work}: part of rank {r} has keys {sorted(p)}, rank 0 has {sorted(keys)}")
        # a process with no units wrote (0, ...) arrays whose trailing shape may be unknown: skip them
        merged = {k: np.concatenate([p[k] for p in parts if p[k].shape[0] > 0] or [parts[0][k]], axis=0)
                  for k in parts[0]}
        shutil.rmtree(work, ignore_errors=True)
    return merged

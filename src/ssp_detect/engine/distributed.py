"""Multi-process helpers for torchrun (DDP). Single-process runs pass through unchanged.

Launch: ``torchrun --nproc-per-node N -m ssp_detect train ...``. torchrun sets RANK, WORLD_SIZE
and LOCAL_RANK; :func:`setup` joins the process group (NCCL on CUDA, gloo on the CPU).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that logs and writes files."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment of torchrun is present with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group if launched by torchrun; returns this rank's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def teardown() -> None:
    """Leave the process group, if any, once every rank has got here: a rank that destroys its
    group while another is still finishing a collective can leave gloo threads running into the
    interpreter's exit, which aborts the process (seen in about one torchrun exit in ten)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_predictions(
    arrays: dict[str, np.ndarray], errors: list[tuple[int, str]]
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Concatenate every rank's predictions, dropping duplicate dataset indices.

    A DistributedSampler pads the last rank with repeated items so that every rank has the same
    count; those repeats are removed here by keeping the first row of each index.
    """
    if not is_distributed():
        return arrays, errors
    parts = all_gather_objects((arrays, errors))
    merged = {k: np.concatenate([p[0][k] for p in parts]) for k in arrays}
    _, first = np.unique(merged["index"], return_index=True)
    merged = {k: v[np.sort(first)] for k, v in merged.items()}
    all_errors = sorted({e for p in parts for e in p[1]})
    return merged, all_errors


def average(value: float) -> float:
    """Mean of a float over ranks."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / world_size())


def sharded_map(items: Iterable[Any], chunk_size: int, fn: Callable[[list[Any]], list[Any]]) -> Iterator[Any]:
    """Apply ``fn`` to a stream split across ranks; yield the results in input order on rank 0.

    Every rank must iterate the same ``items``. Each chunk of ``chunk_size * world`` items is dealt
    out round-robin, every rank maps its share, and rank 0 gathers and re-interleaves them, so a
    stream of any length is processed with bounded memory and without duplicates. Other ranks yield
    nothing. Without a process group this is ``fn`` over chunks of ``chunk_size``.
    """
    world, me = world_size(), rank()
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, chunk_size * world))
        if not chunk:
            return
        mine = fn(chunk[me::world])
        parts = all_gather_objects(mine)
        if me == 0:
            for i in range(len(chunk)):
                yield parts[i % world][i // world]

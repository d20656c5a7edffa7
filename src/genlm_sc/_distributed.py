"""Several processes training one model (``torchrun`` / accelerate DDP): who writes, who waits.

Training launched with ``torchrun --nproc_per_node N`` runs the same script in ``N``
processes; the :class:`transformers.Trainer` joins them in one process group (gloo on
CPUs, NCCL on GPUs). Every file a run leaves behind (records, tokenizers, models,
checkpoints) is written by the main process alone: :func:`main_process_writes` is the one
place that decides it, and the other processes wait there until the files exist. Without a
process group (a plain single-process run) every function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "barrier",
    "gather_rows",
    "is_main_process",
    "main_process_writes",
    "rank",
    "shared_value",
    "world_size",
]

T = TypeVar("T")


def _group() -> Any:
    """``torch.distributed`` when a process group of several processes is running, else None."""
    import sys

    if "torch" not in sys.modules:  # nothing distributed can run without torch imported
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def rank() -> int:
    """This process's rank (0 without a process group; ``RANK`` of ``torchrun`` before
    the group is set up)."""
    dist = _group()
    return dist.get_rank() if dist is not None else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    dist = _group()
    return dist.get_world_size() if dist is not None else int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process writes the run's files (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing without a process group)."""
    dist = _group()
    if dist is not None:
        dist.barrier()


def main_process_writes(write: Callable[[], T], *, wait: bool = True) -> T | None:
    """Run ``write`` on the main process only.

    Parameters
    ----------
    write
        Writes files (and may return something, e.g. the path written).
    wait
        The other processes wait at a barrier until ``write`` has finished (also when it
        failed: the error is raised on the main process), so they can read what it wrote.

    Returns
    -------
    What ``write`` returned on the main process, ``None`` elsewhere.
    """
    result = None
    try:
        if is_main_process():
            result = write()
    finally:
        if wait:
            barrier()
    return result


def shared_value(value: T) -> T:
    """The main process's ``value`` on every process (e.g. the name of a scratch folder
    that only the main process created)."""
    dist = _group()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(tensor: Any) -> Any:
    """Every process's ``tensor`` stacked along the first axis, in rank order (the global
    batch); differentiable: each process's rows get the sum over processes of the gradients
    of their copies. Every process must pass a tensor of the same shape."""
    dist = _group()
    if dist is None:
        return tensor
    return _gather_function().apply(tensor.contiguous())


def _gather_function() -> Any:
    """An all-gather with a backward pass (an all-reduce of the gradients, then this
    process's rows), built from collectives every backend has."""
    import torch
    import torch.distributed as dist

    class GatherRows(torch.autograd.Function):
        @staticmethod
        def forward(ctx, tensor):
            parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, tensor)
            ctx.rows = tensor.shape[0]
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous().clone()
            dist.all_reduce(grad)
            start = dist.get_rank() * ctx.rows
            return grad[start : start + ctx.rows]

    return GatherRows

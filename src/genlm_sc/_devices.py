"""Device and numeric-precision choices shared by training and inference."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from ._settings import settings

__all__ = ["cpu_has_fast_bf16", "resolve_device", "resolve_precision", "without_denormals"]

T = TypeVar("T")

Precision = Literal["fp32", "bf16", "fp16"]


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``gl.settings.device``, and when that is ``"auto"`` too, ``"cuda"`` if
    available, else ``"mps"``, else ``"cpu"``; others checked."""
    import torch

    device = settings.device if device == "auto" else device
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but PyTorch sees no CUDA device")
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AMX or AVX-512 BF16)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: str) -> Precision:
    """``"auto"`` → bf16 where the hardware computes it natively, fp16 on older GPUs, else fp32."""
    import torch

    if precision != "auto":
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
        return precision  # type: ignore[return-value]
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


_NO_DENORMALS = threading.local()


def without_denormals(function: Callable[[], T], *, device: Any) -> T:
    """``function()`` run, on a CPU device, in a new thread that flushes denormal floats to
    zero, with the caller's number of PyTorch threads.

    Backward (and forward) passes through a trained genlm_conv model meet denormal numbers
    (GELU of large negative inputs); on an x86 CPU they made a classification training step
    of the promoter-pretrained model about 10x slower and an expression fine-tuning step
    1.5x slower. The flag is per thread and inherited only by threads created afterwards,
    so the work runs in a fresh thread whose OpenMP workers inherit it; the caller's threads
    are left as they were. Exceptions are re-raised here.
    """
    import torch

    if getattr(_NO_DENORMALS, "active", False) or not str(device).startswith("cpu"):
        return function()
    n_threads = torch.get_num_threads()
    outcome: dict[str, Any] = {}

    def run() -> None:
        _NO_DENORMALS.active = True
        torch.set_num_threads(n_threads)
        torch.set_flush_denormal(True)
        try:
            outcome["value"] = function()
        except BaseException as err:  # re-raised in the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=run, name="genlm_sc-no-denormals")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

"""Device, precision and torchrun setup shared by the commands that run models (pretrain, extract)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist

from cytofm.utils.errors import UserError


class DeviceError(UserError, ValueError):
    """The device asked for is not there (a user error: one line, no traceback)."""


def pick_device(want: str = "auto") -> torch.device:
    """``auto``: the GPU of this process's LOCAL_RANK when CUDA is present, else the CPU."""
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was asked for but no CUDA GPU is available; "
                              "use --device cpu or auto")
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    if want not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"unknown device '{want}' (use auto, cpu or cuda)")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``auto|bf16|fp16|fp32`` (None = fp32): bf16 where the hardware has it, fp16 on
    older GPUs, fp32 on CPUs without bf16 units (emulated bf16 is slower than fp32)."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except Exception:
        return None


def dtype_name(dtype: torch.dtype | None) -> str:
    """``bf16``/``fp16``/``fp32`` for an autocast dtype as :func:`pick_dtype` returns it (None: fp32)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


@contextmanager
def torchrun_group(device: str = "auto"):
    """Join the process group when started by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPUs."""
    started = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
    try:
        yield
    finally:
        if started:
            dist.destroy_process_group()

"""Which device to compute on and in which precision, for training and evaluation alike."""

from __future__ import annotations

import contextlib

import torch

from clrbench import dist
from clrbench.errors import UserError


class DeviceError(UserError, RuntimeError):
    """A device or precision this machine does not have."""


def pick_device(name: str) -> torch.device:
    """``auto`` (this rank's GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        DeviceError: an unknown name, or a CUDA device on a machine without one.
    """
    if name == "auto":
        return torch.device("cuda", dist.local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was asked for, but this machine has no CUDA device.")
    return dev


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where supported (``auto``, ``bf16``), or full fp32 (``fp32``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise DeviceError("This GPU does not support bf16; use --set run.precision=fp32.")
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)

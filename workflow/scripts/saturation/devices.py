"""The device a job computes on, from its config key (``auto``, ``cpu``, ``cuda[:N]``,
``mps``), refused with the key's name where this machine or torch build lacks it."""

from __future__ import annotations

import platform


class DeviceError(RuntimeError):
    """A configured device this job cannot use; the message names the config key."""


def resolve_device(device: str, key: str) -> str:
    """``auto``: cuda when available, else cpu. A device asked for by name must exist here:
    torch would otherwise fail deep in the job with a message that names no setting."""
    import torch

    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    host = platform.node() or "this machine"
    if device.startswith("cuda"):
        if torch.version.cuda is None and torch.version.hip is None:
            why = f"torch {torch.__version__} here is a CPU-only build"
        elif not torch.cuda.is_available():
            why = f"torch {torch.__version__} finds no CUDA device on {host}"
        else:
            index = int(device.partition(":")[2] or 0)
            count = torch.cuda.device_count()
            if index < count:
                return device
            why = f"{host} has {count} CUDA device(s), numbered from 0"
        raise DeviceError(
            f"config key '{key}': {device} is asked for, but {why}; set {key}: auto (cuda "
            "where there is one) or cpu, or run the job where a GPU is (on a cluster: ask "
            "for one with the rule's gpu resource)"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(
            f"config key '{key}': mps is asked for, but {host} has no Apple GPU that torch "
            f"{torch.__version__} can use; set {key}: auto or cpu"
        )
    return device

"""Which device each rank of a batch run generates on.

``mlx.launch --backend ring`` starts every rank with the same environment, so on a host with
several GPUs every rank would see them all and use the first. Each rank therefore takes the GPU
of its local rank (its index among the ranks on its host, round robin over the visible GPUs).
Where a launcher already gave each rank one GPU (``CUDA_VISIBLE_DEVICES`` per rank, as
``mlx.launch --backend nccl`` sets it), or the run is on the CPU, the default device stays.
"""

from __future__ import annotations

import mlx.core as mx

from musicgen.plugin.batch.plan import Agreement, host_name


def local_rank(agreement: Agreement) -> int:
    """This rank's index among the ranks on its host (a collective: every rank calls it)."""
    hosts = [blob.decode() for blob in agreement.gather_bytes(host_name().encode())]
    return hosts[: agreement.rank].count(hosts[agreement.rank])


def rank_device(agreement: Agreement, default: mx.Device, gpus: int) -> mx.Device:
    """The device this rank should use, given the process's ``default`` device and the number
    of ``gpus`` it sees: the GPU of its local rank where several are visible, else ``default``.
    A collective when the group has several ranks."""
    if agreement.size == 1:
        return default
    local = local_rank(agreement)  # on every rank, whatever its device: collectives must match
    if default.type != mx.gpu or gpus <= 1:
        return default
    return mx.Device(mx.gpu, local % gpus)


def use_rank_device(agreement: Agreement) -> mx.Device:
    """Make ``rank_device`` the default device of this process; return it."""
    default = mx.default_device()
    gpus = mx.device_count(mx.gpu) if default.type == mx.gpu else 0
    device = rank_device(agreement, default, gpus)
    if device != default:
        mx.set_default_device(device)
    return device


def device_name(device: mx.Device) -> str:
    """``cpu``, ``gpu:0``, ``gpu:1``...: the device as a sidecar records it (MLX's Device
    shows its index only in its text, ``Device(gpu, 1)``)."""
    kind, index = str(device).removeprefix("Device(").removesuffix(")").split(", ")
    return kind if kind == "cpu" else f"{kind}:{index}"

"""Which device each rank of a batch run generates on, and how a sidecar names it.

Each rank runs on the default device of its process. Under ``mlx.launch``, ``mlx-rag`` gives
every rank the GPU of its local rank before MLX starts (``rag_core.cli.process.pin_rank_gpu``,
through ``CUDA_VISIBLE_DEVICES``; the nccl backend does the same itself). A rank never switches
GPUs inside its process: on the H200 pair, ranks that did (``mx.set_default_device(gpu:1)``)
ran slower than one process on one GPU and sampled different codes from the same seeds. Where
ranks were not pinned (a Python program that imported MLX before joining the group) and share a
host with several GPUs, ``shared_gpu_note`` says so.
"""

from __future__ import annotations

import os

import mlx.core as mx

from musicgen.plugin.batch.plan import Agreement, host_name


def ranks_on_host(agreement: Agreement) -> int:
    """How many ranks of the group run on this rank's host (a collective)."""
    hosts = [blob.decode() for blob in agreement.gather_bytes(host_name().encode())]
    return hosts.count(hosts[agreement.rank])


def shared_gpu_note(agreement: Agreement, device: mx.Device, gpus: int) -> str | None:
    """A note where several ranks of this host run on one GPU while it has ``gpus`` > 1 visible
    to each (a collective when the group has several ranks); None otherwise."""
    if agreement.size == 1:
        return None
    sharing = ranks_on_host(agreement)  # on every rank, whatever its device: collectives match
    if device.type != mx.gpu or gpus <= 1 or sharing <= 1:
        return None
    return (f"{sharing} ranks share {device_name(device)} of this host, whose other GPUs stay "
            f"idle: start the ranks with `mlx.launch ... mlx-rag music batch` (each then gets "
            f"the GPU of its local rank), or give each its own CUDA_VISIBLE_DEVICES.")


def device_name(device: mx.Device, environ: dict[str, str] | None = None) -> str:
    """``cpu``, ``gpu:0``, ``gpu:1``...: the device as a sidecar records it, by the host's GPU
    index (a rank that sees only GPU 1 through ``CUDA_VISIBLE_DEVICES`` runs on ``gpu:1``, which
    MLX calls ``Device(gpu, 0)``)."""
    kind, index = str(device).removeprefix("Device(").removesuffix(")").split(", ")
    if kind == "cpu":
        return kind
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES", "")
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if visible and int(index) < len(ids) and ids[int(index)].isdigit():
        index = ids[int(index)]
    return f"{kind}:{index}"

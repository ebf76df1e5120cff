"""Each rank of a batch run on its own GPU: the local rank picks among the visible GPUs."""

from __future__ import annotations

import mlx.core as mx
import pytest
from musicgen.plugin.batch import devices
from musicgen.plugin.batch.devices import device_name, rank_device


class Group:
    """The ranks of one run, each on a host: what Agreement.gather_bytes returns, without
    mx.distributed (every rank answers from the same list of host names)."""

    def __init__(self, hosts: list[str], rank: int):
        self.hosts, self.rank, self.size = hosts, rank, len(hosts)

    def gather_bytes(self, data: bytes) -> list[bytes]:
        assert data == self.hosts[self.rank].encode()
        return [host.encode() for host in self.hosts]


def devices_of(hosts: list[str], default: mx.Device, gpus: int,
               monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names = []
    for rank, host in enumerate(hosts):
        monkeypatch.setattr(devices, "host_name", lambda host=host: host)
        names.append(device_name(rank_device(Group(hosts, rank), default, gpus)))
    return names


GPU = mx.Device(mx.gpu, 0)


def test_two_ranks_on_a_host_with_two_gpus_take_one_each(monkeypatch):
    assert devices_of(["a", "a"], GPU, 2, monkeypatch) == ["gpu:0", "gpu:1"]


def test_the_local_rank_counts_ranks_on_the_same_host_only(monkeypatch):
    hosts = ["a", "b", "a", "b"]
    assert devices_of(hosts, GPU, 2, monkeypatch) == ["gpu:0", "gpu:0", "gpu:1", "gpu:1"]


def test_more_ranks_than_gpus_share_them_round_robin(monkeypatch):
    assert devices_of(["a"] * 3, GPU, 2, monkeypatch) == ["gpu:0", "gpu:1", "gpu:0"]


@pytest.mark.parametrize("default, gpus", [(GPU, 1), (mx.Device(mx.cpu, 0), 0)])
def test_one_visible_gpu_or_the_cpu_keeps_the_default_device(monkeypatch, default, gpus):
    # One GPU visible: the launcher pinned each rank (CUDA_VISIBLE_DEVICES), or there is one.
    expected = device_name(default)
    assert devices_of(["a", "a"], default, gpus, monkeypatch) == [expected, expected]


def test_a_single_process_keeps_the_default_device_and_gathers_nothing():
    class Alone:
        rank, size = 0, 1

        def gather_bytes(self, data):
            raise AssertionError("no collective for a group of one")

    assert rank_device(Alone(), GPU, 2) == GPU


def test_device_names():
    assert device_name(mx.Device(mx.cpu, 0)) == "cpu"
    assert device_name(mx.Device(mx.gpu, 0)) == "gpu:0"
    assert device_name(mx.Device(mx.gpu, 1)) == "gpu:1"

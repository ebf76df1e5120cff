"""Each rank of a launched run on its own GPU: ``mlx-rag`` pins the GPU of the rank's local rank
through CUDA_VISIBLE_DEVICES before MLX starts; a rank never switches GPUs in its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx
import pytest
from musicgen.plugin.batch import devices
from musicgen.plugin.batch.devices import device_name, shared_gpu_note
from rag_core.cli import process
from rag_core.cli.process import local_rank, pin_rank_gpu


def hostfile(tmp_path, hosts: list[str]) -> str:
    """The ring backend's hostfile for ranks on ``hosts`` (one entry a rank)."""
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps([[f"{host}:{5000 + i}"] for i, host in enumerate(hosts)]))
    return str(path)


def pinned(tmp_path, hosts: list[str], gpus: int, monkeypatch) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES each rank of ``hosts`` gets, on hosts of ``gpus`` GPUs."""
    monkeypatch.delitem(sys.modules, "mlx.core", raising=False)  # as in a fresh `mlx-rag` process
    path = hostfile(tmp_path, hosts)
    return [pin_rank_gpu({"MLX_RANK": str(rank), "MLX_HOSTFILE": path}, gpus)
            for rank in range(len(hosts))]


def test_two_ranks_on_a_host_with_two_gpus_take_one_each(tmp_path, monkeypatch):
    assert pinned(tmp_path, ["127.0.0.1"] * 2, 2, monkeypatch) == ["0", "1"]


def test_the_local_rank_counts_ranks_on_the_same_host_only(tmp_path, monkeypatch):
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
    assert pinned(tmp_path, hosts, 2, monkeypatch) == ["0", "0", "1", "1"]


def test_more_ranks_than_gpus_share_them_round_robin(tmp_path, monkeypatch):
    assert pinned(tmp_path, ["127.0.0.1"] * 3, 2, monkeypatch) == ["0", "1", "0"]


def test_one_gpu_or_none_changes_nothing(tmp_path, monkeypatch):
    assert pinned(tmp_path, ["127.0.0.1"] * 2, 1, monkeypatch) == [None, None]
    assert pinned(tmp_path, ["127.0.0.1"] * 2, 0, monkeypatch) == [None, None]


def test_a_choice_already_made_or_no_launcher_is_kept(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "mlx.core", raising=False)
    path = hostfile(tmp_path, ["127.0.0.1"] * 2)
    chosen = {"MLX_RANK": "1", "MLX_HOSTFILE": path, "CUDA_VISIBLE_DEVICES": "3"}
    assert pin_rank_gpu(chosen, 2) is None and chosen["CUDA_VISIBLE_DEVICES"] == "3"
    assert pin_rank_gpu({"MLX_HOSTFILE": path}, 2) is None  # not started by mlx.launch
    assert pin_rank_gpu({"MLX_RANK": "x", "MLX_HOSTFILE": path}, 2) is None


def test_too_late_once_mlx_is_imported(tmp_path):
    environ = {"MLX_RANK": "1", "MLX_HOSTFILE": hostfile(tmp_path, ["127.0.0.1"] * 2)}
    assert "mlx.core" in sys.modules
    assert pin_rank_gpu(environ, 2) is None and "CUDA_VISIBLE_DEVICES" not in environ


@pytest.mark.parametrize("content", ["", "not json", "{}", "[[]]", "[1, 2]", '[["a:1"]]'])
def test_an_unreadable_hostfile_or_a_rank_outside_it_pins_nothing(tmp_path, content):
    path = tmp_path / "hosts.json"
    path.write_text(content)
    assert local_rank(str(path), 1) is None
    assert local_rank(str(tmp_path / "missing.json"), 0) is None
    assert local_rank(None, 0) is None


def test_the_cli_pins_before_mlx_starts(tmp_path):
    # A fresh `mlx-rag` process as mlx.launch starts rank 1 of two on this host: the GPU count
    # is given by replacing the driver's folder with one of two entries.
    gpus = tmp_path / "gpus"
    for bus in ("0000:01:00.0", "0000:02:00.0"):
        (gpus / bus).mkdir(parents=True)
    code = (f"import sys; from pathlib import Path; from rag_core.cli import process\n"
            f"process.NVIDIA_GPUS = Path({str(gpus)!r})\n"
            f"from rag_core.cli import main\n"
            f"import os, atexit; atexit.register(lambda: print('visible', "
            f"os.environ.get('CUDA_VISIBLE_DEVICES'), 'mlx' , 'mlx.core' in sys.modules))\n"
            f"sys.argv = ['mlx-rag', '--help']; main()")
    env = {**os.environ, "MLX_RANK": "1", "MLX_HOSTFILE": hostfile(tmp_path, ["127.0.0.1"] * 2)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "visible 1" in done.stdout


def test_the_driver_count_reads_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "NVIDIA_GPUS", tmp_path / "none")
    assert process.nvidia_gpu_count() == 0
    (tmp_path / "none" / "0000:01:00.0").mkdir(parents=True)
    assert process.nvidia_gpu_count() == 1


class Group:
    """The ranks of one run, each on a host: what Agreement.gather_bytes returns, without
    mx.distributed (every rank answers from the same list of host names)."""

    def __init__(self, hosts: list[str], rank: int):
        self.hosts, self.rank, self.size = hosts, rank, len(hosts)

    def gather_bytes(self, data: bytes) -> list[bytes]:
        assert data == self.hosts[self.rank].encode()
        return [host.encode() for host in self.hosts]


GPU = mx.Device(mx.gpu, 0)


def notes(hosts: list[str], device: mx.Device, gpus: int, monkeypatch) -> list[str | None]:
    found = []
    for rank, host in enumerate(hosts):
        monkeypatch.setattr(devices, "host_name", lambda host=host: host)
        found.append(shared_gpu_note(Group(hosts, rank), device, gpus))
    return found


def test_unpinned_ranks_sharing_a_gpu_are_told(monkeypatch):
    found = notes(["a", "a", "b"], GPU, 2, monkeypatch)
    assert found[0] and found[1] and "2 ranks share gpu:0" in found[0]
    assert "CUDA_VISIBLE_DEVICES" in found[0]
    assert found[2] is None  # alone on its host


@pytest.mark.parametrize("device, gpus", [(GPU, 1), (mx.Device(mx.cpu, 0), 0)])
def test_pinned_ranks_or_the_cpu_get_no_note(monkeypatch, device, gpus):
    assert notes(["a", "a"], device, gpus, monkeypatch) == [None, None]


def test_a_single_process_gathers_nothing():
    class Alone:
        rank, size = 0, 1

        def gather_bytes(self, data):
            raise AssertionError("no collective for a group of one")

    assert shared_gpu_note(Alone(), GPU, 2) is None


def test_device_names_give_the_hosts_gpu_index():
    assert device_name(mx.Device(mx.cpu, 0), {}) == "cpu"
    assert device_name(mx.Device(mx.gpu, 0), {}) == "gpu:0"
    assert device_name(mx.Device(mx.gpu, 1), {}) == "gpu:1"
    assert device_name(mx.Device(mx.gpu, 0), {"CUDA_VISIBLE_DEVICES": "1"}) == "gpu:1"
    assert device_name(mx.Device(mx.gpu, 1), {"CUDA_VISIBLE_DEVICES": "2,3"}) == "gpu:3"
    # UUIDs or other forms MLX does not number: MLX's own index
    assert device_name(mx.Device(mx.gpu, 0), {"CUDA_VISIBLE_DEVICES": "GPU-ab12"}) == "gpu:0"

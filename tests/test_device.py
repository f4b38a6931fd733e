"""GPU allocation and placement (issues 12.4, 15.3): a job given a GPU never falls back to the CPU;
concurrent jobs take distinct GPUs, one job per GPU, with simulated devices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segrobust.execution import gpu_slots
from segrobust.execution.gpu_allocation import allocated_gpus, gpu_given, holds_gpu, machine_gpus
from segrobust.execution.gpu_slots import (
    GpuSlotError,
    claim_gpu,
    default_lock_dir,
    device_labels,
    lock_scope,
    private_dir,
)
from segrobust.training import device as device_module
from segrobust.training.device import GpuUnavailableError, job_device, resolve_device

SRC = str(Path(__file__).resolve().parents[1] / "src")


# --- was a GPU given? ---


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
        ({"SLURM_JOB_GPUS": "NoDevFiles"}, None),
        ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0"),
        ({"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}, "SLURM_JOB_GPUS=3"),
        ({"SLURM_STEP_GPUS": "1,2", "SLURM_JOB_GPUS": "1,2"}, "SLURM_STEP_GPUS=1,2"),
    ],
)
def test_allocation_is_read_from_the_batch_system_variables(environ, expected):
    assert allocated_gpus(environ) == expected


def test_machine_gpus_come_from_the_driver_then_the_device_nodes(tmp_path):
    assert machine_gpus(tmp_path) == []
    (tmp_path / "dev").mkdir()
    for name in ("nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / "dev" / name).touch()
    assert machine_gpus(tmp_path) == ["nvidia0", "nvidia1"]
    proc = tmp_path / "proc" / "driver" / "nvidia" / "gpus"
    proc.mkdir(parents=True)
    (proc / "0000:41:00.0").mkdir()
    assert machine_gpus(tmp_path) == ["0000:41:00.0"]


def test_the_gpu_resource_counts_only_on_a_machine_with_gpus():
    # profiles/local gives gpu=1 on CPU-only machines too: that alone is no GPU
    assert gpu_given({}, holds_gpu_resource=True, machine=[]) is None
    assert gpu_given({}, holds_gpu_resource=False, machine=["nvidia0"]) is None
    phrase = gpu_given({}, holds_gpu_resource=True, machine=["nvidia0", "nvidia1"])
    assert "'gpu' resource" in phrase and "2 GPU(s): nvidia0, nvidia1" in phrase
    slurm = gpu_given({"CUDA_VISIBLE_DEVICES": "0"}, holds_gpu_resource=False, machine=[])
    assert slurm == "CUDA_VISIBLE_DEVICES=0 is set"


def _cuda(monkeypatch, available: bool, count: int = 0):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_a_job_given_a_gpu_fails_when_cuda_is_unusable(monkeypatch):
    _cuda(monkeypatch, False)
    with pytest.raises(GpuUnavailableError) as err:
        resolve_device("auto", gpu_given="SLURM_JOB_GPUS=3 is set")
    message = str(err.value)
    assert "SLURM_JOB_GPUS=3 is set" in message and "device: cpu" in message
    assert torch.__version__ in message
    # no GPU given: auto still falls back; cpu is always honoured
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu", gpu_given="CUDA_VISIBLE_DEVICES=0 is set").type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA"):
        resolve_device("cuda")


def test_usable_cuda_is_chosen_by_auto(monkeypatch):
    _cuda(monkeypatch, True, 2)
    assert resolve_device("auto", gpu_given="x") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")


def test_the_gpu_resource_is_read_from_the_jobs_resources():
    assert holds_gpu({"gpu": 1}) and not holds_gpu({"gpu": 0}) and not holds_gpu({})
    assert not holds_gpu({"gpu": None})


def test_job_device_refuses_the_cpu_under_a_slurm_gpu_allocation(monkeypatch, tmp_path):
    _cuda(monkeypatch, False)
    with (
        pytest.raises(GpuUnavailableError, match="CUDA_VISIBLE_DEVICES=0"),
        job_device(
            "auto", holds_gpu_resource=True,
            environ={"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "7"}, lock_dir=tmp_path,
        ),
    ):  # fmt: skip
        pass
    notes = []
    with job_device(
        "cpu", holds_gpu_resource=True, environ={"CUDA_VISIBLE_DEVICES": "0"}, lock_dir=tmp_path,
        log=notes.append,
    ) as device:  # fmt: skip
        assert device.type == "cpu"
    assert notes and "CUDA_VISIBLE_DEVICES=0" in notes[0]


# --- which GPU a job takes ---


def test_device_labels_and_lock_scope_follow_the_batch_system():
    assert device_labels(2, {}) == ["0", "1"]
    assert device_labels(2, {"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert device_labels(1, {"CUDA_VISIBLE_DEVICES": "GPU-1a2b/c"}) == ["GPU-1a2b_c"]
    assert lock_scope({"SLURM_JOB_ID": "42"}) == "slurm-42"
    assert lock_scope({}).startswith("host-")


def test_the_default_lock_dir_is_private_and_per_allocation(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(gpu_slots.tempfile, "tempdir", None)  # re-read TMPDIR
    locks = default_lock_dir({"SLURM_JOB_ID": "42"})
    assert locks == tmp_path / f"segrobust-{os.getuid()}" / "gpu-locks" / "slurm-42"
    assert (locks.parent.stat().st_mode & 0o777) == 0o700


def test_a_shared_lock_directory_is_refused(tmp_path):
    base = tmp_path / "tmp"
    (base / f"segrobust-{os.getuid()}").mkdir(parents=True, mode=0o755)
    os.chmod(base / f"segrobust-{os.getuid()}", 0o755)
    with pytest.raises(PermissionError, match="not a private directory"):
        private_dir("gpu-locks", base=base)


def _claim(tmp_path, n=2, **kw):
    return claim_gpu([str(i) for i in range(n)], lock_dir=tmp_path, **kw)


class _NoMoreWaiting(Exception):
    pass


def _never_sleep(seconds):
    raise _NoMoreWaiting


def test_claims_take_distinct_gpus_then_wait_and_say_why(tmp_path):
    first, second = _claim(tmp_path), _claim(tmp_path)
    assert {first.index, second.index} == {0, 1}
    waits = []
    with pytest.raises(_NoMoreWaiting):
        _claim(tmp_path, sleep=_never_sleep, on_wait=waits.append, report_every=0)
    assert "--resources gpu=<GPUs>" in waits[0] and str(os.getpid()) in waits[0]
    assert gpu_slots.holders(tmp_path) == [str(os.getpid())]
    first.release()
    assert _claim(tmp_path, sleep=_never_sleep).index == first.index
    assert gpu_slots.holders(tmp_path) == [str(os.getpid())]


def test_no_device_is_refused(tmp_path):
    with pytest.raises(GpuSlotError, match="no CUDA device"):
        _claim(tmp_path, n=0)


_HOLDER = """
import sys, time
from pathlib import Path
from segrobust.execution.gpu_slots import claim_gpu
claim = claim_gpu([str(i) for i in range(int(sys.argv[2]))], lock_dir=sys.argv[1],
                  poll_seconds=0.05)
Path(sys.argv[3]).write_text(str(claim.index))
while not Path(sys.argv[4]).exists():
    time.sleep(0.05)
"""


def _holders(tmp_path, locks, count, n):
    """``count`` processes each claiming a GPU of ``n`` under ``locks``; each writes the index it
    got to ``tmp_path/got<i>`` and holds it until ``tmp_path/go`` exists."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(locks), str(n), str(tmp_path / f"got{i}"), str(go)],
            env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        for i in range(count)
    ]
    return procs, [tmp_path / f"got{i}" for i in range(count)], go


def _wait_for(paths, procs, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert all(proc.poll() is None for proc in procs), "a holder died"
        assert time.monotonic() < deadline, "holders did not all get a GPU"
        time.sleep(0.05)
    return [p.read_text().split() for p in paths]


def test_concurrent_processes_take_one_gpu_each_and_a_killed_one_frees_its_gpu(tmp_path):
    locks = tmp_path / "locks"
    procs, results, go = _holders(tmp_path, locks, 2, n=2)
    late_dir = tmp_path / "late"
    late_dir.mkdir()
    late = []
    try:
        got = _wait_for(results, procs)
        assert sorted(index for [index] in got) == ["0", "1"]
        # a third process waits while both GPUs are held ...
        late, late_result, late_go = _holders(late_dir, locks, 1, n=2)
        time.sleep(1.5)
        assert not late_result[0].exists(), "a third job got a GPU while both were held"
        # ... until a holder is killed outright (no clean-up code of its own runs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        [[index]] = _wait_for(late_result, late)
        assert index == got[0][0]
    finally:
        go.touch()
        (late_dir / "go").touch()
    for proc in procs[1:] + late:
        assert proc.wait(timeout=30) == 0


_PLACED = """
import sys, time
from pathlib import Path
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: int(sys.argv[2])
torch.cuda.set_device = lambda index: None
torch.cuda.get_device_name = lambda device: "Simulated GPU"
from segrobust.training.device import job_device
with job_device("auto", holds_gpu_resource=True, environ={}, lock_dir=sys.argv[1],
                log=lambda m: None) as device:
    Path(sys.argv[3]).write_text(str(device))
    while not Path(sys.argv[4]).exists():
        time.sleep(0.05)
"""


def test_concurrent_jobs_get_distinct_simulated_gpus(tmp_path):
    go = tmp_path / "go"
    results = [tmp_path / f"device{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PLACED, str(tmp_path / "locks"), "3", str(r), str(go)],
            env={**os.environ, "PYTHONPATH": SRC},
        )
        for r in results
    ]
    try:
        got = _wait_for(results, procs, timeout=180)
    finally:
        go.touch()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    assert sorted(device for [device] in got) == ["cuda:0", "cuda:1", "cuda:2"]


def test_a_job_device_sets_its_gpu_records_it_and_releases_it(monkeypatch, tmp_path):
    _cuda(monkeypatch, True, 2)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set", index)))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Simulated GPU")
    monkeypatch.setattr(device_module, "machine_gpus", lambda: ["nvidia0", "nvidia1"])
    held = claim_gpu(["0", "1"], lock_dir=tmp_path)  # another job holds cuda:0
    notes = []
    with job_device(
        "auto", holds_gpu_resource=True, environ={}, lock_dir=tmp_path, log=notes.append
    ) as device:
        assert device == torch.device("cuda", 1)
        assert calls == [("set", 1)]
        assert "cuda:1 (Simulated GPU)" in notes[0]
        assert device_module.device_name(device) == "Simulated GPU"
    held.release()
    # released on exit: both GPUs are free again
    again = [claim_gpu(["0", "1"], lock_dir=tmp_path, sleep=_never_sleep) for _ in range(2)]
    assert sorted(claim.index for claim in again) == [0, 1]

"""GPU allocation and placement (issues 12.4, 15.3): a job given a GPU never falls back to the CPU;
concurrent jobs take distinct GPUs, or share one k at a time, with simulated devices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from segrobust import gpus
from segrobust.gpus import (
    GpuSlotError,
    allocated_gpus,
    claim_gpu,
    device_labels,
    gpu_given,
    lock_scope,
    machine_gpus,
    rule_resources,
    slots_per_device,
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


def test_job_device_refuses_the_cpu_under_a_slurm_gpu_allocation(monkeypatch, tmp_path):
    _cuda(monkeypatch, False)
    with (
        pytest.raises(GpuUnavailableError, match="CUDA_VISIBLE_DEVICES=0"),
        job_device(
            "auto", jobs_per_device=1, slots_per_gpu=1, holds_gpu_resource=True,
            environ={"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "7"}, lock_dir=tmp_path,
        ),
    ):  # fmt: skip
        pass
    notes = []
    with job_device(
        "cpu", jobs_per_device=1, slots_per_gpu=1, holds_gpu_resource=True,
        environ={"CUDA_VISIBLE_DEVICES": "0"}, lock_dir=tmp_path, log=notes.append,
    ) as device:  # fmt: skip
        assert device.type == "cpu"
    assert notes and "CUDA_VISIBLE_DEVICES=0" in notes[0]


# --- how jobs share GPUs ---


def test_rule_resources_count_slots_of_the_largest_sharing():
    assert slots_per_device({"train_model": 1, "evaluate_model": 1}) == 1
    assert rule_resources({"train_model": 1, "evaluate_model": 1}, "train_model") == {
        "gpu": 1, "gpu_slots": 1,
    }  # fmt: skip
    shared = {"train_model": 4, "evaluate_model": 2}
    assert rule_resources(shared, "train_model") == {"gpu": 0, "gpu_slots": 1, "gres": "gpu:1"}
    assert rule_resources(shared, "evaluate_model") == {
        "gpu": 0, "gpu_slots": 2, "gres": "gpu:1",
    }  # fmt: skip
    mixed = {"train_model": 4, "evaluate_model": 1}
    assert rule_resources(mixed, "evaluate_model") == {"gpu": 1, "gpu_slots": 4}
    with pytest.raises(ValueError, match=r"gpu_jobs_per_device\.train_model = 3; allowed: 1, 2"):
        slots_per_device({"train_model": 3})


def test_device_labels_follow_cuda_visible_devices():
    assert device_labels(2, {}) == ["0", "1"]
    assert device_labels(2, {"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert device_labels(1, {"CUDA_VISIBLE_DEVICES": "GPU-1a2b/c"}) == ["GPU-1a2b_c"]
    assert lock_scope({"SLURM_JOB_ID": "42"}) == "slurm-42"
    assert lock_scope({}).startswith("host-")


def _claim(tmp_path, n=2, k=1, slots=1, **kw):
    return claim_gpu(
        n, jobs_per_device=k, slots_per_gpu=slots, labels=[str(i) for i in range(n)],
        lock_dir=tmp_path, **kw,
    )  # fmt: skip


class _NoMoreWaiting(Exception):
    pass


def _never_sleep(seconds):
    raise _NoMoreWaiting


def test_whole_gpu_claims_take_distinct_devices_then_wait(tmp_path):
    first, second = _claim(tmp_path), _claim(tmp_path)
    assert {first.index, second.index} == {0, 1}
    assert first.share == second.share == 1.0
    waits = []
    with pytest.raises(_NoMoreWaiting):
        _claim(tmp_path, sleep=_never_sleep, on_wait=waits.append, report_every=0)
    assert "gpu_slots=<GPUs x 1>" in waits[0] and str(os.getpid()) in waits[0]
    first.release()
    assert _claim(tmp_path, sleep=_never_sleep).index == first.index


def test_shared_gpus_spread_first_and_hold_at_most_their_slots(tmp_path):
    # S = 4 slots per GPU; training shares a GPU 4 ways, evaluation 2 ways
    train = [_claim(tmp_path, k=4, slots=4) for _ in range(2)]
    assert sorted(c.index for c in train) == [0, 1]  # spread before stacking
    assert all(c.share == 0.25 for c in train)
    evaluation = [_claim(tmp_path, k=2, slots=4, sleep=_never_sleep) for _ in range(2)]
    assert sorted(c.index for c in evaluation) == [0, 1] and evaluation[0].share == 0.5
    # each GPU now has 1 slot free: two more training jobs fit, a whole-GPU job does not
    more = [_claim(tmp_path, k=4, slots=4, sleep=_never_sleep) for _ in range(2)]
    assert sorted(c.index for c in more) == [0, 1]
    with pytest.raises(_NoMoreWaiting):
        _claim(tmp_path, k=4, slots=4, sleep=_never_sleep)
    held = {i: sum(len(c.slots) for c in train + evaluation + more if c.index == i) for i in (0, 1)}
    assert held == {0: 4, 1: 4}


def test_impossible_requests_are_refused(tmp_path):
    with pytest.raises(GpuSlotError, match="no CUDA device"):
        _claim(tmp_path, n=0)
    with pytest.raises(GpuSlotError, match="do not divide"):
        _claim(tmp_path, k=4, slots=2)


_HOLDER = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from segrobust.gpus import claim_gpu
claim = claim_gpu(int(sys.argv[2]), jobs_per_device=int(sys.argv[3]),
                  slots_per_gpu=int(sys.argv[4]), labels=[str(i) for i in range(int(sys.argv[2]))],
                  lock_dir=sys.argv[1], poll_seconds=0.05)
Path(sys.argv[5]).write_text(f"{claim.index} {claim.share}")
while not Path(sys.argv[6]).exists():
    time.sleep(0.05)
"""


def _holders(tmp_path, locks, count, n, k, slots):
    """``count`` processes each claiming a slot under ``locks``; each writes what it got to
    ``tmp_path/got<i>`` and holds it until ``tmp_path/go`` exists."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _HOLDER,
                str(locks),
                str(n),
                str(k),
                str(slots),
                str(tmp_path / f"got{i}"),
                str(go),
            ],
            env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        for i in range(count)
    ]
    return procs, [tmp_path / f"got{i}" for i in range(count)], go


def _wait_for(paths, procs, timeout=60):
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert all(proc.poll() is None for proc in procs), "a holder died"
        assert time.monotonic() < deadline, "holders did not all get a slot"
        time.sleep(0.05)
    return [p.read_text().split() for p in paths]


def test_concurrent_processes_pack_k_per_gpu_and_a_killed_one_frees_its_slot(tmp_path):
    locks = tmp_path / "locks"
    procs, results, go = _holders(tmp_path, locks, 4, n=2, k=2, slots=2)
    late_dir = tmp_path / "late"
    late_dir.mkdir()
    late = []
    try:
        got = _wait_for(results, procs)
        assert sorted(index for index, _ in got) == ["0", "0", "1", "1"]
        assert {share for _, share in got} == {"0.5"}
        # a fifth process waits while all four slots are held ...
        late, late_result, late_go = _holders(late_dir, locks, 1, n=2, k=2, slots=2)
        time.sleep(1.5)
        assert not late_result[0].exists(), "a fifth job got a slot while all four were held"
        # ... until a holder is killed outright (no clean-up code of its own runs)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        [[index, _]] = _wait_for(late_result, late)
        assert index == got[0][0]
    finally:
        go.touch()
        (late_dir / "go").touch()
    for proc in procs[1:] + late:
        assert proc.wait(timeout=30) == 0


_PLACED = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: int(sys.argv[2])
torch.cuda.set_device = lambda index: None
fractions = []
torch.cuda.set_per_process_memory_fraction = lambda f, i: fractions.append(f)
torch.cuda.get_device_name = lambda device: "Simulated GPU"
from segrobust.training.device import job_device
with job_device("auto", jobs_per_device=1, slots_per_gpu=1, holds_gpu_resource=True,
                environ={}, lock_dir=sys.argv[1], log=lambda m: None) as device:
    Path(sys.argv[3]).write_text(f"{device} {fractions}")
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
    assert sorted(device for device, _ in got) == ["cuda:0", "cuda:1", "cuda:2"]
    assert all(fractions == "[]" for _, fractions in got)  # a whole GPU: no memory cap


def test_a_shared_gpu_caps_the_memory_and_records_the_device(monkeypatch, tmp_path):
    _cuda(monkeypatch, True, 2)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set", index)))
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, i: calls.append(("mem", f, i))
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Simulated GPU")
    monkeypatch.setattr(device_module, "machine_gpus", lambda: ["nvidia0", "nvidia1"])
    notes = []
    with job_device(
        "auto", jobs_per_device=4, slots_per_gpu=4, holds_gpu_resource=True, environ={},
        lock_dir=tmp_path, log=notes.append,
    ) as device:  # fmt: skip
        assert device == torch.device("cuda", 0)
        assert calls == [("set", 0), ("mem", 0.25, 0)]
        assert "cuda:0 (Simulated GPU)" in notes[0] and "memory share 0.25" in notes[0]
        assert device_module.device_name(device) == "Simulated GPU"
    # released on exit: the same slot is free again
    again = gpus.claim_gpu(
        2, jobs_per_device=1, slots_per_gpu=4, labels=["0", "1"], lock_dir=tmp_path,
        sleep=_never_sleep,
    )  # fmt: skip
    assert again.slots == (0, 1, 2, 3)


class _FakeResources(dict):
    """A job's resources as the SLURM plugin reads them (``.get`` and attributes)."""

    __getattr__ = dict.__getitem__


def test_a_slurm_job_group_of_shared_jobs_asks_for_one_gpu():
    """k jobs of a rule sharing a GPU, packed into one SLURM job by a job group
    (``--groups train_model=gpu_pack --group-components gpu_pack=k``): Snakemake sums the
    jobs' integer resources, the plugin turns the group's into sbatch options."""
    from snakemake.resources import GroupResources, Resources
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    def group_of(resources, k=4):
        job = SimpleNamespace(pipe_group=None, resources={
            "_cores": 2, "_nodes": 1, "mem_mb": 1000, "runtime": 30, **resources})  # fmt: skip
        merged = GroupResources.basic_layered(
            [[job] * k], constraints=Resources.from_mapping({"_cores": 64, "_nodes": 10}),
            run_local=False, additive_resources=["runtime"], sortby=["runtime"],
        )  # fmt: skip
        return merged, set_gres_string(SimpleNamespace(resources=_FakeResources(merged)))

    shared, sbatch = group_of(rule_resources({"train_model": 4}, "train_model"))
    assert sbatch == " --gres=gpu:1"  # one GPU for the four
    assert shared["gpu_slots"] == 4 and shared["_cores"] == 8 and shared["mem_mb"] == 4000
    whole, sbatch = group_of(rule_resources({"train_model": 1}, "train_model"))
    assert sbatch == " --gpus=4"  # a whole GPU each: gpu=1 adds up

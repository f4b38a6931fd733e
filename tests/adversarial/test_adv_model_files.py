"""Issue 22, case 1: a shared model file cannot run code.

``model.pt`` and the training checkpoint ``last.pt`` are read with torch's weights-only
unpickler (``segrobust.networks.modelfile``). A model file whose pickle holds an object with
``__reduce__`` -> ``(os.system, ("touch FLAG",))``, with calibration.json's ``model.sha256`` set
to its digest (the checksum only proves the two files travel together), is refused by
``segrobust predict`` naming the file and saying why; FLAG is never created.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from calibrated import calibrated_run, good_images, rehash_calibration
from sandbox import make_sandbox
from schema_defaults import model_kwargs, train_settings

from segrobust.contract import Run
from segrobust.data.dataset import DatasetWriter
from segrobust.networks.modelfile import ModelFileError, load_model_file, read_torch_file
from segrobust.training.train import train_run

REPO = Path(__file__).resolve().parents[2]


class RunsACommand:
    """Pickles as a call of ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return calibrated_run(tmp_path_factory.mktemp("model_files"))


def _evil_model(run: Path, folder: Path, flag: Path, legacy: bool = False) -> Path:
    """A copy of ``run`` whose model.pt is the real payload plus a command object, with a
    calibration that matches it."""
    shutil.copytree(run, folder)
    payload = torch.load(folder / "model.pt", weights_only=True)  # the real file is plain data
    payload["note"] = RunsACommand(f"touch {flag}")
    torch.save(payload, folder / "model.pt", _use_new_zipfile_serialization=not legacy)
    rehash_calibration(folder)
    return folder


def _predict(model: Path, images: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``segrobust predict`` in a fresh process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "segrobust.cli", "predict", "--model", str(model), "--images",
         str(images), "--out", str(out), "--device", "cpu"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_model_file_that_would_run_a_command_is_refused_unread(run, tmp_path, legacy):
    sandbox = make_sandbox(tmp_path)
    flag = sandbox.root / "FLAG"
    model = _evil_model(run, sandbox.root / "shared", flag, legacy=legacy)
    images = good_images(sandbox.root / "images", 2)
    before = sandbox.snapshot()
    proc = _predict(model, images, sandbox.target, cwd=sandbox.root)
    assert proc.returncode == 1, proc.stderr
    assert not flag.exists()
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"segrobust predict: {model / 'model.pt'}: this model file holds")
    assert "objects other than tensors and plain data" in message
    assert "loading it could run code, so it was not loaded" in message
    if not legacy:  # the zip format names the offending object without unpickling it
        assert "posix.system" in message or "os.system" in message
    assert "Traceback" not in proc.stderr
    sandbox.assert_untouched(before)


def test_a_bare_pickle_as_model_file_is_refused_unread(tmp_path):
    flag = tmp_path / "FLAG"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(RunsACommand(f"touch {flag}")))
    with pytest.raises(ModelFileError, match=rf"{path}: (this model file holds|not a readable)"):
        load_model_file(path)
    assert not flag.exists()


def test_the_real_model_file_and_checkpoint_hold_only_plain_data(run, tmp_path):
    """What training writes loads weights-only, the checkpoint (with its random states) too."""
    network, info = load_model_file(run / "model.pt")
    assert info["arch"] == "unet" and isinstance(network, torch.nn.Module)
    data = _discs(tmp_path / "data")
    checkpoint = tmp_path / "ckpt" / "last.pt"
    _train(data, tmp_path / "a", checkpoint, epochs=3, stop_after=1)
    state = read_torch_file(checkpoint, what="training checkpoint")
    assert state["epoch"] == 1 and isinstance(state["rng"]["numpy"][1], torch.Tensor)


def test_a_checkpoint_that_would_run_a_command_is_ignored_and_training_restarts(tmp_path):
    sandbox = make_sandbox(tmp_path)
    flag = sandbox.root / "FLAG"
    data = _discs(sandbox.root / "data")
    checkpoint = sandbox.root / "ckpt" / "last.pt"
    checkpoint.parent.mkdir()
    torch.save({"epoch": 5, "run_key": "x", "evil": RunsACommand(f"touch {flag}")}, checkpoint)
    lines: list[str] = []
    _train(data, sandbox.root / "run", checkpoint, epochs=2, log=lines.append)
    assert not flag.exists()
    assert any(
        line.startswith(f"ignoring {checkpoint}: this training checkpoint holds") for line in lines
    ), lines
    assert any(line.startswith("epoch 1/2") for line in lines)  # started over
    assert not any(line.startswith("resuming") for line in lines)
    assert not checkpoint.exists()  # deleted once model.pt was written


def _discs(out: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    with DatasetWriter(out, {"source": "test"}) as ds:
        for i in range(6):
            label = ((yy - 8) ** 2 + (xx - 4 - i) ** 2 <= 9).astype(np.uint8)
            image = (label + 0.2 * rng.standard_normal(label.shape)).astype(np.float32)
            ds.add(f"c{i}", image, label, split="training" if i < 4 else "validation")
    return out


class _Stop(Exception):
    pass


def _train(data, out, checkpoint, epochs, stop_after=None, log=None):
    """Train a tiny U-Net; with ``stop_after``, stop (as a kill would) once that epoch's
    checkpoint is written."""
    lines = []

    def record(line):
        lines.append(line)
        if log is not None:
            log(line)
        if stop_after is not None and line.startswith(f"epoch {stop_after + 1}/"):
            raise _Stop  # the checkpoint of epoch ``stop_after`` is written

    try:
        train_run(
            data, run=Run("texture", "discs", "unet", "full", 1), spatial_dims=2,
            model_kwargs=model_kwargs("unet", channels=(4, 8)),
            settings=train_settings(epochs=epochs, batch_size=2), device=torch.device("cpu"),
            out_model=out / "model.pt", out_log=out / "train_log.csv",
            out_patches=out / "patches.csv", checkpoint_path=checkpoint, log=record,
        )  # fmt: skip
    except _Stop:
        pass
    return lines

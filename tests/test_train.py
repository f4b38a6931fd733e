"""Training loop: outputs, learning, determinism, patch bookkeeping, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from schema_defaults import model_kwargs, train_settings

from segrobust.contract import PATCH_COLUMNS, TRAIN_LOG_COLUMNS, Run
from segrobust.data.dataset import Case, DatasetWriter, load_split
from segrobust.networks.modelfile import load_model_file
from segrobust.registry import UnknownNameError
from segrobust.training.device import amp_settings, resolve_device
from segrobust.training.train import PatchSampler, TrainSettings, train_run

torch.set_num_threads(1)
SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)
UNET = model_kwargs("unet", channels=(4, 8, 16))


def _discs(out: Path, n_train: int = 8, size: int = 32, seed: int = 0) -> Path:
    """Bright discs of random radius and centre on noise; an easy 2D task."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    with DatasetWriter(out, provenance={"source": "test"}) as ds:
        for i in range(n_train + 4):
            r = rng.uniform(4, 9)
            cy, cx = rng.uniform(r, size - r, 2)
            label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
            image = 0.3 * rng.standard_normal((size, size)) + label
            split = "training" if i < n_train else ("validation", "calibration", "test")[i % 3]
            ds.add(f"c{i}", image.astype(np.float32), label, split=split)
    return out


def _spheres(out: Path, n: int = 4, size: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    with DatasetWriter(out, provenance={"source": "test"}) as ds:
        for i in range(n + 3):
            c = rng.uniform(5, size - 5, 3)
            label = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9).astype(np.uint8)
            image = 0.3 * rng.standard_normal(label.shape) + label
            split = "training" if i < n else ("validation", "calibration", "test")[i - n]
            ds.add(f"s{i}", image.astype(np.float32), label, split=split)
    return out


def _run(data: Path, out: Path, settings: TrainSettings, arch="unet", kwargs=UNET, **kw):
    run = Run("texture", "discs", arch, "full", kw.pop("seed", 7))
    return train_run(
        data, run=run, spatial_dims=kw.pop("spatial_dims", 2), model_kwargs=kwargs,
        settings=settings, device=torch.device("cpu"),
        out_model=out / "model.pt", out_log=out / "train_log.csv",
        out_patches=out / "patches.csv", checkpoint_path=out / "ckpt" / "last.pt",
        log=kw.pop("log", lambda _m: None),
    )  # fmt: skip


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return _discs(tmp_path_factory.mktemp("data") / "discs")


def test_outputs_columns_and_learning(discs, tmp_path):
    messages: list[str] = []
    settings = train_settings(epochs=12, batch_size=4, lr=1e-2)
    result = _run(discs, tmp_path, settings, log=messages.append)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert tuple(log.columns) == TRAIN_LOG_COLUMNS and len(log) == 12
    assert (log["device"] == "cpu").all() and (log["amp"] == "off").all()
    assert log["loss"].iloc[-3:].mean() < log["loss"].iloc[:3].mean() - 0.1
    assert log["val_dice"].max() > log["val_dice"].iloc[0] + 0.1
    assert result["best_val_dice"] == pytest.approx(log["val_dice"].max())
    assert len(messages) == 12 and "epoch 12/12" in messages[-1]
    patches = pd.read_csv(tmp_path / "patches.csv")
    assert tuple(patches.columns) == PATCH_COLUMNS and len(patches) == 12 * 8
    model, meta = load_model_file(tmp_path / "model.pt")
    assert meta["best_epoch"] == result["best_epoch"] and meta["img_size"] == [32, 32]
    assert not (tmp_path / "ckpt" / "last.pt").exists()
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_same_seed_same_weights_and_log(discs, tmp_path):
    settings = train_settings(epochs=2, batch_size=4)
    _run(discs, tmp_path / "a", settings)
    _run(discs, tmp_path / "b", settings)
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    _run(discs, tmp_path / "c", settings, seed=8)
    a = pd.read_csv(tmp_path / "a" / "train_log.csv")
    c = pd.read_csv(tmp_path / "c" / "train_log.csv")
    assert not np.allclose(a["loss"], c["loss"])


def _assert_same_run(a: Path, b: Path) -> None:
    la = pd.read_csv(a / "train_log.csv").drop(columns="seconds")
    lb = pd.read_csv(b / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(la, lb)
    pd.testing.assert_frame_equal(pd.read_csv(a / "patches.csv"), pd.read_csv(b / "patches.csv"))
    sa = torch.load(a / "model.pt", weights_only=False)["state_dict"]
    sb = torch.load(b / "model.pt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_patch_sampler_records_true_foreground_ratio(tmp_path):
    """Image voxels hold their own flat index, so each patch reveals where it was cut."""
    size, patch = 16, 8
    rng = np.random.default_rng(1)
    label = (rng.random((size,) * 3) < 0.05).astype(np.uint8)
    case = Case("v", np.arange(size**3, dtype=np.float32).reshape((size,) * 3), label, (1,) * 3,
                np.eye(4))  # fmt: skip
    sampler = PatchSampler([case], train_settings((patch,) * 3, samples_per_volume=6), 3)
    images, labels = sampler.sample()
    assert images.shape == (6, 1, patch, patch, patch)
    for img, lab in zip(images, labels, strict=True):
        z, y, x = np.unravel_index(int(img.min()), (size,) * 3)
        true = label[z : z + patch, y : y + patch, x : x + patch]
        assert float(lab.mean()) == pytest.approx(true.mean())


def test_patch_training_only_foreground_patches(tmp_path):
    data = _spheres(tmp_path / "spheres")
    settings = train_settings(
        (8, 8, 8), inference={"sw_batch_size": 2}, epochs=2, batch_size=4, samples_per_volume=3,
        pos_neg_ratio=(1.0, 0.0),
    )  # fmt: skip
    _run(
        data,
        tmp_path / "run",
        settings,
        spatial_dims=3,
        kwargs=model_kwargs("unet", channels=(4, 8)),
    )
    patches = pd.read_csv(tmp_path / "run" / "patches.csv")
    assert len(patches) == 2 * 4 * 3 and (patches["fg_ratio"] > 0).all()
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    per_epoch = patches.groupby("epoch")["fg_ratio"]
    np.testing.assert_allclose(log["fg_ratio_mean"], per_epoch.mean(), rtol=1e-6)
    np.testing.assert_allclose(log["fg_ratio_min"], per_epoch.min(), rtol=1e-6)
    np.testing.assert_allclose(log["fg_ratio_max"], per_epoch.max(), rtol=1e-6)
    # background-only sampling yields patches without foreground somewhere
    settings_bg = train_settings((8, 8, 8), samples_per_volume=8, pos_neg_ratio=(0, 1))
    _, labels = PatchSampler(load_split(data, "training"), settings_bg, 0).sample()
    assert (labels.flatten(1).mean(1) == 0).any()


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    from schema_defaults import model_kwargs, train_settings
    from segrobust.contract import Run
    from segrobust.training.train import train_run
    data, out = sys.argv[1], sys.argv[2]
    train_run(data, run=Run("texture", "discs", "unet", "full", 7), spatial_dims=2,
              model_kwargs=model_kwargs("unet", channels=(4, 8, 16)),
              settings=train_settings(epochs=5, batch_size=4, val_interval=2),
              device=torch.device("cpu"), out_model=out + "/model.pt",
              out_log=out + "/train_log.csv", out_patches=out + "/patches.csv",
              checkpoint_path=out + "/ckpt/last.pt",
              log=lambda m: (print(m, flush=True), time.sleep(0.4)))
    """
)


def test_resume_after_sigkill_matches_uninterrupted_run(discs, tmp_path):
    settings = train_settings(epochs=5, batch_size=4, val_interval=2)
    _run(discs, tmp_path / "full", settings)

    out = tmp_path / "killed"
    ckpt = out / "ckpt" / "last.pt"
    path = os.pathsep.join([SRC, TESTS, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT, str(discs), str(out)], env=env)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "model.pt").exists(), "kill did not land mid-run"
    killed_after = torch.load(ckpt, weights_only=False)["epoch"]
    assert 1 <= killed_after < 5

    messages: list[str] = []
    _run(discs, out, settings, log=messages.append)
    assert messages[0].startswith("resuming") and f"after epoch {killed_after}" in messages[0]
    _assert_same_run(tmp_path / "full", out)
    assert not ckpt.exists()


def test_checkpoint_of_other_settings_is_not_resumed(discs, tmp_path):
    settings = train_settings(epochs=2, batch_size=4)
    _run(discs, tmp_path / "clean", settings)
    stale = tmp_path / "stale"
    (stale / "ckpt").mkdir(parents=True)
    torch.save({"run_key": "another run", "epoch": 1}, stale / "ckpt" / "last.pt")
    messages: list[str] = []
    _run(discs, stale, settings, log=messages.append)
    assert messages[0].startswith("ignoring")
    _assert_same_run(tmp_path / "clean", stale)


def test_bad_arguments_are_named(discs, tmp_path):
    with pytest.raises(UnknownNameError, match="allowed: .*noskip_unet"):
        _run(discs, tmp_path, train_settings(epochs=1), arch="resnet")
    with pytest.raises(ValueError, match="multiple of 64"):
        _run(
            discs,
            tmp_path,
            train_settings(epochs=1),
            kwargs=model_kwargs("unet", channels=(2,) * 7),
        )
    with pytest.raises(ValueError, match="train.loss 'bce' not allowed; allowed: dice, dice_ce"):
        train_settings(loss="bce")
    with pytest.raises(ValueError, match="pos_neg_ratio"):
        train_settings(pos_neg_ratio=(0, 0))
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "train_log.csv").exists()


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert amp_settings(torch.device("cpu")) == (False, None)
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")


class _LossTurningNan(torch.nn.Module):
    """MONAI's DiceLoss until call ``nan_from`` (0-based), then NaN: a run that diverges."""

    calls = 0
    nan_from = 5

    def __init__(self, **kwargs):
        super().__init__()
        from monai.losses import DiceLoss

        self.inner = DiceLoss(**kwargs)

    def forward(self, prediction, target):
        loss = self.inner(prediction, target)
        type(self).calls += 1
        if type(self).calls > self.nan_from:
            return loss * float("nan")
        return loss


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(discs, tmp_path, monkeypatch):
    from segrobust.training import train as train_module
    from segrobust.training.train import NonFiniteLossError

    monkeypatch.setattr(train_module, "DiceLoss", _LossTurningNan)
    _LossTurningNan.calls = 0
    # 8 training images in batches of 4: two batches per epoch; the 6th call is epoch 3, batch 1
    settings = train_settings(epochs=5, batch_size=4)
    with pytest.raises(NonFiniteLossError) as err:
        _run(discs, tmp_path, settings)
    message = str(err.value)
    assert "epoch 3, batch 1" in message and "without writing model.pt" in message
    assert f"checkpoint of epoch 2 ({tmp_path / 'ckpt' / 'last.pt'}) is kept" in message
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "train_log.csv").exists()
    ckpt = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not list(tmp_path.rglob(".tmp-*"))


def test_non_finite_loss_in_the_first_epoch_writes_nothing(discs, tmp_path, monkeypatch):
    from segrobust.training import train as train_module
    from segrobust.training.train import NonFiniteLossError

    monkeypatch.setattr(train_module, "DiceLoss", _LossTurningNan)
    _LossTurningNan.calls = 0
    monkeypatch.setattr(_LossTurningNan, "nan_from", 0)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 0.*no checkpoint was written"):
        _run(discs, tmp_path, train_settings(epochs=2, batch_size=4))
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())
    assert not (tmp_path / "model.pt").exists()


def test_outputs_follow_the_umask(discs, tmp_path):
    import stat

    old = os.umask(0o002)  # a lab group that shares results
    try:
        _run(discs, tmp_path, train_settings(epochs=1, batch_size=4))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.pt").stat().st_mode) == 0o664


def test_progress_lines_timing_marks_and_the_recorded_device(discs, tmp_path):
    """What a person follows on the console (issue 12.5) and what the fixed-cost benchmark
    reads (issue 15.2): one progress line per epoch, first/last step marks in the job log."""
    from types import SimpleNamespace

    from segrobust.execution.job import job

    fake = SimpleNamespace(log=[str(tmp_path / "job.log")], rule="train_model", threads=1)
    lines: list[str] = []
    settings = train_settings(epochs=3, batch_size=4, val_interval=2)
    with job(fake):
        result = train_run(
            discs, run=Run("texture", "discs", "unet", "full", 7), spatial_dims=2,
            model_kwargs=UNET, settings=settings, device=torch.device("cpu"),
            out_model=tmp_path / "model.pt", out_log=tmp_path / "train_log.csv",
            out_patches=tmp_path / "patches.csv", checkpoint_path=tmp_path / "last.pt",
            log=lambda _m: None, progress=lines.append,
        )  # fmt: skip
    assert [line.split(",")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "not validated yet" in lines[0]  # validation every 2 epochs
    best = f"best validation Dice {result['best_val_dice']:.3f} (epoch {result['best_epoch']})"
    assert best in lines[2] and lines[2].endswith(" s")
    marks = [line.split()[1] for line in (tmp_path / "job.log").read_text().splitlines()
             if line.startswith("timing")]  # fmt: skip
    assert marks == ["process_start", "job_start", "first_step", "last_step", "exit"]
    _, meta = load_model_file(tmp_path / "model.pt")
    assert meta["device"] == "cpu" and meta["device_name"] == "cpu"

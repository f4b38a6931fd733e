"""Cluster resources derived from the config (segrobust.spec.resources, .network_cost).

The MAC counts are checked against torch's FLOP counter on the real networks (meta tensors: no
arithmetic runs); the formula on hand-computed configs with round constants; the requests for
monotonicity and for the paper grid's scale.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from schema_defaults import default_config
from slurm_cluster import REPO
from snakemake.utils import update_config, validate
from torch.utils.flop_counter import FlopCounterMode

from segrobust.data.sources import get_source
from segrobust.networks import build_model
from segrobust.registry import UnknownNameError
from segrobust.spec import resources
from segrobust.spec.architectures import ARCHITECTURES, get_architecture
from segrobust.spec.network_cost import macs_per_voxel, network_layers, parameter_count
from segrobust.spec.resources import (
    Cost,
    DatasetSize,
    SplitSize,
    dataset_size,
    request,
    rule_cost,
    seen_voxels,
    window_count,
)
from segrobust.spec.runs import study_runs

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
DEFAULTS = default_config()


def config_with(overrides: dict) -> dict:
    """The schema defaults with ``overrides`` merged in, validated (defaults filled)."""
    config = default_config()
    update_config(config, copy.deepcopy(overrides))
    validate(config, str(SCHEMA))
    return config


def paper_config() -> dict:
    """config/config.yaml overlaid by config/paper.yaml, as `--configfile config/paper.yaml`."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, copy.deepcopy(PAPER))
    validate(config, str(SCHEMA))
    return config


def _wider(arch: str) -> dict:
    """The papers' widths where paper.yaml has them, else every width doubled."""
    kwargs = dict(DEFAULTS["models"][arch])
    if arch in PAPER["models"]:
        return {**kwargs, **PAPER["models"][arch]}
    for key in ("channels", "features"):
        if key in kwargs:
            kwargs[key] = [2 * c for c in kwargs[key]]
    if "feature_size" in kwargs:
        kwargs["feature_size"] *= 2
    return kwargs


def _counted(arch: str, dims: int, kwargs: dict, size: tuple[int, ...]) -> tuple[float, int]:
    """(forward MACs per input voxel by torch's FLOP counter, parameters) of the real network."""
    model = build_model(arch, dims, img_size=size, **kwargs).to("meta")
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 1, *size, device="meta"))
    voxels = math.prod(size)
    return counter.get_total_flops() / 2 / voxels, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(DEFAULTS["models"]))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("width", ["default", "wider"])
def test_counted_macs_and_weights_match_torch(arch, dims, width):
    kwargs = DEFAULTS["models"][arch] if width == "default" else _wider(arch)
    size = (64,) * dims
    macs, params = _counted(arch, dims, kwargs, size)
    # Swin UNETR's relative position bias and window shifts are not counted (within 10 %).
    tolerance = 0.1 if arch == "swin_unetr" else 0.01
    assert macs_per_voxel(arch, dims, kwargs, size) == pytest.approx(macs, rel=tolerance)
    assert parameter_count(arch, dims, kwargs, size) == pytest.approx(params, rel=0.06)


def test_unet_macs_by_hand():
    kwargs = {"channels": [4, 8], "norm": "batch", "dropout": 0.0}
    # level 0: 1->4 and 4->4 (3x3: 9 taps); level 1 at 1/4 of the voxels: 4->8, 8->8;
    # up 8->4 (one tap per output); decoder on the concatenation: 8->4, 4->4; head 4->1.
    by_hand = 9 * 4 + 9 * 16 + (9 * 32 + 9 * 64) / 4 + 32 + 9 * 32 + 9 * 16 + 4
    assert macs_per_voxel("unet", 2, kwargs, (32, 32)) == by_hand == 864
    # without skips the first decoder convolution reads 4 channels, not 8
    assert macs_per_voxel("noskip_unet", 2, kwargs, (32, 32)) == by_hand - 9 * 16


def test_unknown_architecture_is_named():
    with pytest.raises(UnknownNameError, match="unknown architecture 'resnet'.*unet"):
        network_layers("resnet", 2, {}, (32, 32))


def test_window_count_follows_monai_grid():
    # 96 voxels, 32 patches, overlap 0.5: interval 16, windows at 0, 16, ..., 64 -> 5 per axis
    assert window_count((96, 96, 96), 32, 0.5) == 125
    assert window_count((32, 32, 32), 32, 0.25) == 1
    assert window_count((20, 40), 32, 0.25) == 2  # an axis shorter than the patch: one window
    assert seen_voxels(96**3, 3, 32, 0.5) == 125 * 32**3
    assert seen_voxels(64 * 64, 2, None, 0.0) == 64 * 64


@pytest.fixture
def round_constants(monkeypatch):
    """Round measured constants, so expectations can be computed by hand."""
    for name, value in {
        "START_S": 10.0,
        "BASE_MB": 500.0,
        "ACTIVATION_BYTES": 10.0,
        "CHECKPOINT_S_PER_MB": 0.0,
        "GPU_START_S": 60.0,
        "GPU_STEP_S": 0.5,
        "GPU_HOST_MB": 1000.0,
    }.items():
        monkeypatch.setattr(resources, name, value)
    unet = dataclasses.replace(
        get_architecture("unet"), train_s_per_gmac={2: 2.0}, infer_s_per_gmac={2: 1.0}
    )
    monkeypatch.setitem(ARCHITECTURES._entries, "unet", unet)
    monkeypatch.setattr(resources, "SCORE_S_PER_VOXEL", {2: 1e-6})
    monkeypatch.setattr(resources, "DATASET_BYTES_PER_VOXEL", 13)


HAND = {
    "device": "cpu",
    "models": {"unet": {"channels": [4, 8]}},
    "studies": {
        "texture": {
            "image_size": 32,
            "n_train": 10,
            "n_validation": 2,
            "n_test": 5,
            "n_calibration": 3,
            "alphas": [0.2, 0.8],
            "directions": ["background"],
            "archs": ["unet"],
            "train": {"epochs": 3, "batch_size": 4, "val_interval": 2},
        }
    },
}
HAND_JOB = {"study": "texture", "dataset": "texture-background-0.2", "arch": "unet",
            "patch": "full", "seed": "1"}  # fmt: skip
UNET_4_8 = {"channels": [4, 8], "norm": "batch", "dropout": 0.0}


def _hand_train() -> tuple[float, float, float, int]:
    """(CPU compute seconds, MB without activations or CUDA context, activation MB, calls) of
    the HAND training job."""
    train = 3 * 10 * 1024 * 864 * 2.0 / 1e9  # epochs x images x voxels x MACs x s/GMAC
    validation = 2 * 2 * 1024 * 864 * 1.0 / 1e9  # ceil(3 / 2) validations x 2 images
    weights_mb = parameter_count("unet", 2, UNET_4_8, (32, 32)) * 4 / 2**20
    activations = sum(layer.activations for layer in network_layers("unet", 2, UNET_4_8, (32, 32)))
    data_mb = (10 + 2) * 1024 * 13 / 2**20
    activation_mb = 4 * 1024 * activations * 10 / 2**20
    calls = 3 * math.ceil(10 / 4) + 2 * 2  # optimisation steps + validation forward passes
    return train + validation, 500 + data_mb + 8 * weights_mb, activation_mb, calls


def test_train_cost_by_hand_on_cpu(round_constants):
    compute, mb, activation_mb, _ = _hand_train()
    cost = rule_cost(config_with(HAND), "train_model", HAND_JOB)
    assert cost.seconds == pytest.approx(10 + compute)
    assert cost.mb == pytest.approx(mb + activation_mb)


def test_train_cost_by_hand_on_a_gpu(round_constants):
    # the activations live in GPU memory; the host holds the CUDA context instead
    compute, mb, _, calls = _hand_train()
    config = config_with({**HAND, "device": "auto", "resources": {"gpu_speedup": 4}})
    cost = rule_cost(config, "train_model", HAND_JOB)
    assert cost.seconds == pytest.approx(10 + 60 + compute / 4 + calls * 0.5)
    assert cost.mb == pytest.approx(mb + 1000)


def test_evaluate_cost_by_hand(round_constants):
    cost = rule_cost(config_with(HAND), "evaluate_model", HAND_JOB)
    # two test alphas x 5 test images, the own alpha's 3 calibration images and the second
    # texture generator's 200 (shift_tests.authors_images)
    images = 2 * 5 + 3 + 200
    per_image = 1024 * 864 * 1.0 / 1e9 + 1024 * 1e-6
    assert cost.seconds == pytest.approx(10 + images * per_image)


def test_request_applies_factor_floor_and_attempt():
    settings = {"runtime_factor": 3, "mem_factor": 2, "min_runtime": 10, "max_runtime": None}
    assert request(Cost(1200, 1000), settings) == resources.Request(60, 2000)
    assert request(Cost(1200, 1000), settings, attempt=2) == resources.Request(120, 4000)
    assert request(Cost(30, 100), settings).runtime == 10  # 1.5 minutes -> the floor
    assert request(Cost(1201, 100.1), settings) == resources.Request(61, 201)  # rounded up


def test_request_is_capped_at_max_runtime():
    settings = {"runtime_factor": 3, "mem_factor": 2, "min_runtime": 10, "max_runtime": 90}
    assert request(Cost(1200, 1000), settings) == resources.Request(60, 2000)
    assert request(Cost(1200, 1000), settings, attempt=2).runtime == 90
    assert request(Cost(36000, 1000), settings).runtime == 90


def _train_seconds(overrides: dict) -> float:
    return rule_cost(config_with(overrides), "train_model", HAND_JOB).seconds


def _scaled(path: tuple[str, ...], value) -> dict:
    """HAND with one nested key replaced."""
    out = copy.deepcopy(HAND)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    "path, small, large",
    [
        (("studies", "texture", "train", "epochs"), 3, 30),
        (("studies", "texture", "n_train"), 10, 100),
        (("studies", "texture", "image_size"), 32, 128),
        (("models", "unet", "channels"), [4, 8], [16, 32]),
    ],
)
def test_training_cost_grows_with_epochs_images_size_and_width(path, small, large):
    assert _train_seconds(_scaled(path, large)) > _train_seconds(_scaled(path, small))


@pytest.mark.parametrize(
    "path, small, large",
    [
        (("studies", "texture", "n_test"), 5, 500),
        (("studies", "texture", "alphas"), [0.2, 0.8], [0.2, 0.4, 0.6, 0.8]),
    ],
)
def test_evaluation_cost_grows_with_test_images_and_conditions(path, small, large):
    def cost(overrides):
        return rule_cost(config_with(overrides), "evaluate_model", HAND_JOB)

    assert cost(_scaled(path, large)).seconds > cost(_scaled(path, small)).seconds


def test_perturbation_evaluation_counts_every_severity():
    base = {"studies": {"perturbation": {"severities": [1]}}}
    job = {"study": "perturbation", "dataset": "texture_demo", "arch": "unet", "patch": "full",
           "seed": "1"}  # fmt: skip
    one = rule_cost(config_with(base), "evaluate_model", job).seconds
    five = rule_cost(config_with({"studies": {"perturbation": {"severities": [1, 2, 3, 4, 5]}}}),
                     "evaluate_model", job).seconds  # fmt: skip
    assert five > one


def _paper_jobs(config: dict, rule: str) -> dict[str, resources.Request]:
    out = {}
    for study in ("texture", "perturbation", "context"):
        for run in study_runs(config, study):
            job = {"study": run.study, "dataset": run.dataset, "arch": run.arch,
                   "patch": run.patch, "seed": str(run.seed)}  # fmt: skip
            out[run.path + run.study] = request(rule_cost(config, rule, job), config["resources"])
    return out


def test_paper_training_gets_hours_not_the_flat_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no prepared datasets here: real ones are bounded
    jobs = _paper_jobs(paper_config(), "train_model")
    minutes = sorted(r.runtime for r in jobs.values())
    assert len(jobs) == 1062  # the paper grid's trainings
    assert minutes[-1] >= 6 * 60  # 3D context runs at 96^3 patches: hours on a GPU
    assert minutes[len(minutes) // 2] > 2 * 10  # the median is well above the 10-minute floor
    assert len(set(minutes)) > 20  # per run, not one flat value


def test_downloadable_source_bounds_apply_before_preparation(tmp_path):
    config = config_with({"datasets": {"spleen3d": {"source": "msd_spleen", "variant": "3d"},
                                       "glas2d": {"source": "glas", "max_cases": 50}}})  # fmt: skip
    spleen = dataset_size(config, "spleen3d", tmp_path)
    assert spleen.dims == 3
    assert sum(s.count for s in spleen.splits.values()) >= 41  # every case, rounded up
    assert spleen.split("test").voxels == math.prod(math.ceil(500 / s) for s in (1.5, 1.5, 2.0))
    glas = dataset_size(config, "glas2d", tmp_path)
    assert glas.split("training") == SplitSize(math.ceil(50 * 0.7), 256 * 256)


def _write_prepared(root, name: str, shapes: dict[str, list[tuple[int, ...]]]) -> None:
    directory = root / "resources" / "datasets" / name
    datalist = {}
    for split, split_shapes in shapes.items():
        datalist[split] = []
        for i, shape in enumerate(split_shapes):
            path = f"images/{split}{i}.nii.gz"
            (directory / "images").mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), directory / path)
            datalist[split].append({"image": path, "label": path})
    (directory / "datalist.json").write_text(json.dumps(datalist))


def test_prepared_real_dataset_is_measured_from_its_files(tmp_path):
    config = config_with({"datasets": {"mine": {"source": "msd_import", "path": "x",
                                                "variant": "3d"}}})  # fmt: skip
    _write_prepared(tmp_path, "mine", {"training": [(20, 30, 10), (40, 30, 10)],
                                       "validation": [(8, 8, 8)], "test": []})  # fmt: skip
    size = dataset_size(config, "mine", tmp_path)
    assert size == DatasetSize(3, {
        "training": SplitSize(2, 12000), "validation": SplitSize(1, 512),
        "calibration": SplitSize(0, 0), "test": SplitSize(0, 0)})  # fmt: skip


def test_user_msd_directory_is_bounded_from_its_headers(tmp_path):
    from archives import write_msd_dir

    raw = write_msd_dir(tmp_path, n_cases=10, shape=(40, 30, 12), spacing=(0.8, 0.8, 5.0))
    config = config_with({"datasets": {"mine": {"source": "msd_import", "path": str(raw),
                                                "variant": "3d"}}})  # fmt: skip
    size = dataset_size(config, "mine", tmp_path / "elsewhere")
    # 32 x 24 x 60 mm resampled to 1.5 x 1.5 x 2 mm: 22 x 16 x 30 voxels
    assert size.split("training") == SplitSize(7, 22 * 16 * 30)
    slices = dataset_size(config_with({"datasets": {"mine": {"source": "msd_import",
                                                             "path": str(raw)}}}),
                          "mine", tmp_path / "elsewhere")  # fmt: skip
    assert slices.split("training") == SplitSize(math.ceil(10 * 12 * 0.7), 256 * 256)


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="no cost model for rule 'download_source'.*train_model"):
        rule_cost(DEFAULTS, "download_source", {})


def test_stated_defaults_match_the_preparation():
    from segrobust.data.prepare import PrepareOptions

    options = PrepareOptions()
    assert [resources.DEFAULT_2D_EDGE] * 2 == options.image_size
    assert list(resources.DEFAULT_SPACING) == options.spacing
    assert get_source("busi").defaults["classes"] == options.classes


def test_every_rule_with_resources_has_a_cost_model():
    rules = (REPO / "workflow" / "rules").glob("*.smk")
    named = {m for f in rules for m in re.findall(r'runtime_of\("(\w+)"\)', f.read_text())}
    assert named == set(resources.COSTED_RULES)


def test_measured_constants_cover_every_architecture():
    records = [get_architecture(arch) for arch in DEFAULTS["models"]]
    for record in records:
        assert set(record.train_s_per_gmac) == set(record.spatial_dims), record.name
        assert set(record.infer_s_per_gmac) == set(record.spatial_dims), record.name
    per_gmac = [
        value
        for record in records
        for value in (*record.train_s_per_gmac.values(), *record.infer_s_per_gmac.values())
    ]
    measured = (
        *per_gmac, *resources.SCORE_S_PER_VOXEL.values(), resources.START_S, resources.BASE_MB,
        resources.ACTIVATION_BYTES, resources.TEXTURE_S_PER_VOXEL, resources.SPHERES_S_PER_VOXEL,
        resources.PERTURB_S_PER_VOXEL, resources.PREPARE_S_PER_VOXEL, resources.TABLE_S_PER_ROW,
        resources.TABLE_BYTES_PER_ROW, resources.ANALYSIS_S_PER_ROW_RESAMPLE,
    )  # fmt: skip
    assert all(value > 0 for value in measured)


def test_parse_time_imports_stay_light():
    # the Snakefile imports this in every cluster job: no torch, numpy or nibabel
    code = (
        "import sys, segrobust.spec.resources; "
        "print(sorted(m for m in ('torch', 'numpy', 'nibabel', 'monai') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert done.stdout.strip() == "[]"


def test_the_printed_gpu_estimates_say_they_are_order_of_magnitude_only(tmp_path, capsys):
    """The GPU constants (gpu_speedup, start, step, host memory) are assumed: every GPU figure
    the command prints carries the caveat; CPU figures (measured constants) do not."""
    tiny = REPO / "tests" / "configs" / "tiny.yaml"
    on_gpu = tmp_path / "gpu.yaml"
    on_gpu.write_text("device: auto\n")
    assert resources.main([str(REPO / "config" / "config.yaml"), str(tiny), str(on_gpu)]) == 0
    lines = capsys.readouterr().out.splitlines()
    caveat = "order of magnitude only: the GPU constants are not measured"
    assert lines[0].startswith(f"estimates on a GPU, {caveat}")
    assert lines[-1].startswith("all GPU jobs: expected") and lines[-1].endswith(f"({caveat})")
    assert resources.main([str(REPO / "config" / "config.yaml"), str(tiny)]) == 0
    cpu = capsys.readouterr().out
    assert cpu.startswith("estimates on one CPU thread") and caveat not in cpu

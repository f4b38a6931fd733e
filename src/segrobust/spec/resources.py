"""Cluster resources of every rule -- ``runtime`` (minutes) and ``mem_mb`` -- from the config.

On SLURM a job gets exactly what its rule requests, so a flat default (the profile's 120 minutes)
kills paper-scale training and over-books memory for table jobs. Each rule's request is derived
here from what the job will process, by one formula:

    cost      = (seconds, MB) the job needs on its device, from the config and measured constants
    runtime   = max(resources.min_runtime, ceil(resources.runtime_factor * seconds / 60)) * attempt,
                at most resources.max_runtime (when set)
    mem_mb    = ceil(resources.mem_factor * MB) * attempt

``attempt`` is Snakemake's attempt number: a job killed for its time or memory limit and
retried (the SLURM profile's ``retries``) asks for twice as much (training resumes from its
last epoch checkpoint, so the retry finishes what the first attempt started).

Training (one model run), in multiply-adds (MACs) counted by :mod:`segrobust.spec.network_cost`
for the architecture at its configured width:

    train MACs = epochs * samples * sample voxels * MACs/voxel
                 samples = n_train whole 2D images, or n_train * samples_per_volume 3D patches
    val MACs   = validations * (sum over validation images of the voxels the network sees)
                 validations = ceil(epochs / val_interval); a sliding window sees
                 n_windows * patch voxels (MONAI's window grid at the configured overlap)
    compute    = train MACs * train_s_per_gmac[dims] / 1e9 (the architecture's record)
                 + val MACs * infer_s_per_gmac[dims] / 1e9
    CPU s      = START_S + compute + checkpoints
    GPU s      = START_S + GPU_START_S + compute / resources.gpu_speedup
                 + (optimisation steps + validation forward passes) * GPU_STEP_S + checkpoints
                 checkpoints = epochs * 3 copies of the weights (weights, Adam moments) written
                 at 1 / CHECKPOINT_S_PER_MB MB/s
    MB         = BASE_MB (+ GPU_HOST_MB on a GPU) + DATASET_BYTES_PER_VOXEL * training and
                 validation voxels + PARAM_COPIES * 4 bytes * weights + (on a CPU: the
                 activations live in GPU memory otherwise) batch * sample voxels
                 * activations/voxel * ACTIVATION_BYTES

Evaluation (one model run on every test condition of ``segrobust.spec.runs``): per image, the
network's MACs on the voxels it sees at its infer_s_per_gmac, plus SCORE_S_PER_VOXEL[dims] for
reading the image and scoring it (metrics, false-negative-rate curve); MB: the base, two copies
of the weights, one input's activations (on a CPU) and SCORE_BYTES_PER_VOXEL of the largest
image.

Data rules: generated or perturbed voxels times the measured seconds per voxel; preparing a real
dataset: its volumes' voxels (bounded before the archive is unpacked). Tables (aggregate,
analyze, figures, report): per-image rows (images x conditions x model runs) times measured
seconds and bytes per row.

Which device: GPU rules (``train_model``, ``evaluate_model``: ``resources: gpu=1``) are
estimated for a GPU unless ``device: cpu``; everything else for one CPU thread (more threads are
assumed no faster, which errs long). The CPU constants were measured on the development machine
(benchmarks/resource_constants.py, one thread of a shared 2-core x86-64 VM); a GPU was not
available to measure, so ``gpu_speedup`` (how many times faster than that thread a GPU runs
the network), the GPU start, step latency and host memory are conservative assumptions, and
:func:`main` prints :data:`GPU_CAVEAT` ("order of magnitude only") beside every GPU figure. A
cluster's real numbers are in each job's benchmark file (``results/<study>/benchmarks/...tsv``:
wall seconds and max_rss).

Dataset sizes: a synthetic dataset's counts and sizes are config keys. A real dataset's are read
from its prepared directory (``datalist.json`` and the NIfTI headers) once it exists -- Snakemake
re-evaluates resources just before submitting a job, when its inputs exist -- and bounded from
the source before that (a dry run): each source record's ``bounds`` (``segrobust.data.sources``).

Nothing here imports torch, numpy or nibabel at module level: the Snakefile imports this at
parse time in every cluster job.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrobust.contract import (
    ANALYSIS_FIGURES,
    Run,
    dataset_dir,
    study_of_figure,
    texture_dataset_name,
)
from segrobust.data.bundles import MNI152_SHAPE
from segrobust.data.sources import get_source
from segrobust.spec.architectures import get_architecture
from segrobust.spec.network_cost import network_layers
from segrobust.spec.predict_targets import predict_plan
from segrobust.spec.runs import enabled_studies, evaluation_conditions, spatial_dims, study_runs
from segrobust.spec.shifts import AUTHORS_PREFIX, authors_dataset_name, authors_dataset_spec

# ---- measured on the development machine (benchmarks/resource_constants.py, 1 thread) --------

# Seconds per 10^9 training and inference MACs, per architecture and spatial dims: each
# architecture's record (segrobust.spec.architectures: train_s_per_gmac, infer_s_per_gmac),
# measured at the default study's widths and sizes (training: 64^2 images, batch 2; 32^3
# patches, batch 4; Swin UNETR 3D at 64^3; the larger of two runs. Inference, no gradient: whole
# 64^2 images (2D, the larger of two runs), sliding windows of the patch over a volume of twice
# its edge at the default window settings (3D)).
#: Seconds to start a job: Python, torch, MONAI and the library imported.
START_S = 4.8
#: Resident MB of a job's process once the library is imported.
BASE_MB = 381.0
#: Bytes per counted activation in training (outputs, normalised and activated copies, their
#: gradients): the slope of the peak resident size over the batch size.
ACTIVATION_BYTES = 12.2
#: Seconds per voxel of reading and scoring one test image (metrics, FNR curve, soft quality).
SCORE_S_PER_VOXEL: dict[int, float] = {2: 3.7e-8, 3: 3.5e-8}
#: Seconds per voxel of generating synthetic data (images written, texture complexity computed)
#: and of perturbing a test split (per severity; the slowest perturbation, speckle).
TEXTURE_S_PER_VOXEL = 3.3e-6
SPHERES_S_PER_VOXEL = 6.3e-7
PERTURB_S_PER_VOXEL = 4.4e-6
#: Seconds per source voxel of preparing a real dataset (read, resample or resize, normalise,
#: write), on a synthetic MSD-layout directory (the slower of the 2D and 3D variants).
PREPARE_S_PER_VOXEL = 4.8e-7
#: Seconds and peak bytes per per-image row of joining per-run tables (the per-image table and
#: the FNR table's 51 rows per image: read, concatenate, write), and seconds per row and
#: bootstrap resample of the analysis (the larger of two runs).
TABLE_S_PER_ROW = 2.0e-4
TABLE_BYTES_PER_ROW = 11100.0
ANALYSIS_S_PER_ROW_RESAMPLE = 1.9e-6

# ---- stated, not measured ---------------------------------------------------------------------

#: Bytes per voxel of a training job's images in memory: each image (float32) and label (uint8)
#: as loaded, plus the float32 image and label tensors stacked for whole-image training.
DATASET_BYTES_PER_VOXEL = 13
#: Copies of the weights a training job holds: weights, gradients, two Adam moments, the best
#: state, and the checkpoint's serialised copy of weights and moments.
PARAM_COPIES = 8
#: Seconds per MB of writing the per-epoch checkpoint (100 MB/s: a slow network file system).
CHECKPOINT_S_PER_MB = 0.01
#: Not measured (no GPU was available): a GPU job's start (CUDA context, cuDNN autotuning) and
#: its fixed cost per optimisation step or forward pass (kernel launches, host-device copies,
#: synchronisation) in seconds, both generous; the host memory the CUDA context and libraries add
#: (MB; CUDA loads kernels lazily, so about 1-2 GB).
GPU_START_S = 60.0
GPU_STEP_S = 0.02
GPU_HOST_MB = 2000.0
#: Said next to every GPU figure this module prints: ``resources.gpu_speedup``, GPU_START_S,
#: GPU_STEP_S and GPU_HOST_MB are assumptions, not measurements.
GPU_CAVEAT = "order of magnitude only: the GPU constants are not measured"
#: Bytes per voxel of scoring one image: probabilities, masks, distance maps and FNR thresholds.
SCORE_BYTES_PER_VOXEL = 64.0
#: segrobust.data.prepare's defaults for an entry that sets none (tests/test_resources.py keeps
#: them equal): the 2D edge and the 3D spacing.
DEFAULT_2D_EDGE = 256
DEFAULT_SPACING = (1.5, 1.5, 2.0)

SPLITS = ("training", "validation", "calibration", "test")


@dataclass(frozen=True)
class Cost:
    """What one job needs on its device before the safety factors: wall seconds and peak MB."""

    seconds: float
    mb: float


@dataclass(frozen=True)
class SplitSize:
    """One split of a dataset: its number of images and the voxels of the largest."""

    count: int
    voxels: int


@dataclass(frozen=True)
class DatasetSize:
    """A dataset's spatial dims and the size of each split (``SPLITS``)."""

    dims: int
    splits: Mapping[str, SplitSize]

    def split(self, name: str) -> SplitSize:
        return self.splits.get(name, SplitSize(0, 0))


# ---- dataset sizes ------------------------------------------------------------------------------


def _synthetic_size(dims: int, edge: int, spec: Mapping[str, Any]) -> DatasetSize:
    counts = {
        "training": spec["n_train"],
        "validation": spec["n_validation"],
        "calibration": spec["n_calibration"],
        "test": spec["n_test"],
    }
    return DatasetSize(dims, {s: SplitSize(int(n), edge**dims) for s, n in counts.items()})


def _split_counts(total: int, entry: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
    """How ``total`` cases split by the entry's (or the config's) fractions, rounded up."""
    split = {**config["split"], **(entry.get("split") or {})}
    calibration = entry.get("calibration_fraction", config["split"]["calibration_fraction"])
    held_out = math.ceil(total * split["test"])
    return {
        "training": math.ceil(total * split["train"]),
        "validation": math.ceil(total * split["validation"]),
        "calibration": math.ceil(held_out * calibration),
        "test": held_out,
    }


@dataclass(frozen=True)
class RawBound:
    """What preparing a real dataset reads at most: cases, voxels per raw case, and the
    largest prepared 3D volume (voxels) and slices per volume (2D variants of volumes)."""

    cases: int
    raw_voxels: int
    volume_voxels: int
    slices: int


def raw_bound(entry: Mapping[str, Any]) -> RawBound:
    """:class:`RawBound` of a real dataset entry: its source record's ``bounds``
    (``segrobust.data.sources``), or for a user's directory (a source without bounds,
    ``msd_import``) its dataset.json and NIfTI headers; ``max_cases`` caps the cases."""
    spacing = entry.get("spacing") or DEFAULT_SPACING
    source = get_source(entry["source"])
    if source.bounds is None:
        cases, raw, shape_mm, slices = _msd_import_bounds(Path(entry["path"]))
    else:
        bound = source.bounds
        cases = bound.cases
        if isinstance(cases, Mapping):  # per class (BUSI): the configured classes
            cases = sum(cases[c] for c in entry.get("classes") or source.defaults["classes"])
        raw, shape_mm, slices = bound.raw_voxels, bound.extent_mm, bound.slices
    volume = (
        math.prod(math.ceil(round(mm / s, 6)) for mm, s in zip(shape_mm, spacing, strict=True))
        if shape_mm
        else 0
    )
    if entry.get("max_cases"):
        cases = min(cases, int(entry["max_cases"]))
    return RawBound(cases, raw, volume, slices)


def _bounded_real_size(entry: Mapping[str, Any], config: Mapping[str, Any]) -> DatasetSize:
    """The largest a real dataset can be before it is prepared (:func:`raw_bound`)."""
    bound = raw_bound(entry)
    if entry.get("variant", "2d") == "3d":
        dims, voxels, total = 3, bound.volume_voxels, bound.cases
    else:
        edge = entry.get("image_size", DEFAULT_2D_EDGE)
        height, width = (edge, edge) if isinstance(edge, int) else edge
        dims, voxels, total = 2, height * width, bound.cases * bound.slices
    counts = _split_counts(total, entry, config)
    return DatasetSize(dims, {s: SplitSize(n, voxels) for s, n in counts.items()})


@functools.lru_cache(maxsize=64)
def _msd_import_bounds(root: Path) -> tuple[int, int, tuple[float, ...] | None, int]:
    """(cases, voxels of the largest volume, its extent in mm, most slices) of a user's
    MSD-layout directory, from its dataset.json and the NIfTI headers; zeros when the
    directory cannot be read (preparation then names the problem)."""
    import nibabel as nib

    try:
        meta = json.loads((root / "dataset.json").read_text())
        headers = [nib.load(root / case["image"]).header for case in meta["training"]]
    except (OSError, ValueError, KeyError, TypeError):  # nibabel's errors are ValueErrors
        return 0, 0, None, 0
    if not headers:
        return 0, 0, None, 0
    shapes = [h.get_data_shape()[:3] for h in headers]
    extents = [
        tuple(n * float(z) for n, z in zip(h.get_data_shape()[:3], h.get_zooms()[:3], strict=True))
        for h in headers
    ]
    largest = max(range(len(shapes)), key=lambda i: math.prod(shapes[i]))
    extent = tuple(max(e[axis] for e in extents) for axis in range(len(extents[0])))
    return len(shapes), math.prod(shapes[largest]), extent, max(s[-1] for s in shapes)


@functools.lru_cache(maxsize=256)
def _prepared_size(directory: str, stamp: int) -> DatasetSize:
    """A prepared dataset's split counts and largest images, from ``datalist.json`` and the
    NIfTI headers (``stamp``: the datalist's mtime, so a re-prepared dataset is re-read)."""
    import nibabel as nib

    root = Path(directory)
    datalist = json.loads((root / "datalist.json").read_text())
    splits, dims = {}, 2
    for split in SPLITS:
        shapes = [nib.load(root / entry["image"]).shape for entry in datalist.get(split, [])]
        if shapes:
            dims = len(shapes[0])
        splits[split] = SplitSize(len(shapes), max((math.prod(s) for s in shapes), default=0))
    return DatasetSize(dims, splits)


def dataset_size(config: Mapping[str, Any], name: str, root: str | Path = ".") -> DatasetSize:
    """The size of dataset ``name``: from the config for synthetic data; for real data from
    its prepared directory under ``root`` when present, else its bound before preparation."""
    if name.startswith("texture-"):
        study = config["studies"]["texture"]
        return _synthetic_size(2, study["image_size"], study)
    if name.startswith(AUTHORS_PREFIX):
        spec = authors_dataset_spec(config, name)
        counts = dict(n_train=0, n_validation=0, n_calibration=0, n_test=spec["n_test"])
        return _synthetic_size(2, spec["image_size"], counts)
    entry = config["datasets"][name]
    if entry["source"] == "synthetic_texture":
        return _synthetic_size(2, entry["image_size"], entry)
    if entry["source"] == "synthetic_spheres":
        return _synthetic_size(3, entry["volume_size"], entry)
    datalist = Path(root) / dataset_dir(name) / "datalist.json"
    if datalist.is_file():
        return _prepared_size(str(datalist.parent), datalist.stat().st_mtime_ns)
    return _bounded_real_size(entry, config)


# ---- network work -------------------------------------------------------------------------------


def window_count(image_edges: tuple[int, ...], patch: int, overlap: float) -> int:
    """Windows MONAI's sliding-window inference runs over an image (its dense grid: per axis,
    ceil((edge - patch) / interval) + 1 windows with interval = int(patch * (1 - overlap)))."""
    interval = max(int(patch * (1 - overlap)), 1)
    return math.prod(
        math.ceil(max(edge - patch, 0) / interval) + 1 if edge > patch else 1
        for edge in image_edges
    )


def _edge_of(voxels: int, dims: int) -> int:
    """The edge of the square / cube holding ``voxels`` (an image known by its voxel count)."""
    return max(round(voxels ** (1 / dims)), 1)


def seen_voxels(voxels: int, dims: int, patch: int | None, overlap: float) -> float:
    """Voxels the network processes for one image of ``voxels``: the image itself, or every
    sliding window (the image taken as a cube: a flatter volume of as many voxels needs about
    as many windows, up to the overlap at its borders, which the runtime factor covers)."""
    if patch is None:
        return float(voxels)
    return window_count((_edge_of(voxels, dims),) * dims, patch, overlap) * patch**dims


def forward_calls(voxels: int, dims: int, patch: int | None, overlap: float, batch: int) -> int:
    """Forward passes for one image: one, or its sliding windows in batches of ``batch``."""
    if patch is None:
        return 1
    return math.ceil(window_count((_edge_of(voxels, dims),) * dims, patch, overlap) / batch)


@dataclass(frozen=True)
class Network:
    """One run's network: its MACs and activations per voxel and its weights."""

    arch: str
    dims: int
    macs: float
    activations: float
    weights: float

    @classmethod
    def of(cls, config: Mapping[str, Any], run: Run, sample_edges: tuple[int, ...]) -> Network:
        kwargs = config["models"][run.arch]
        return _network(run.arch, sample_edges, json.dumps(kwargs, sort_keys=True))

    def train_seconds(self, voxels: float) -> float:
        return voxels * self.macs * get_architecture(self.arch).train_s_per_gmac[self.dims] / 1e9

    def infer_seconds(self, voxels: float) -> float:
        return voxels * self.macs * get_architecture(self.arch).infer_s_per_gmac[self.dims] / 1e9

    @property
    def weight_mb(self) -> float:
        return self.weights * 4 / 2**20


@functools.lru_cache(maxsize=1024)
def _network(arch: str, edges: tuple[int, ...], kwargs_json: str) -> Network:
    """:class:`Network` of ``arch`` (keys as JSON, so calls can be cached: the DAG asks for the
    same network once per job and resource)."""
    layers = network_layers(arch, len(edges), json.loads(kwargs_json), edges)
    return Network(
        arch,
        len(edges),
        sum(layer.macs for layer in layers),
        sum(layer.activations for layer in layers),
        sum(layer.weights for layer in layers),
    )


def _patch(run: Run) -> int | None:
    return None if run.patch == "full" else int(run.patch)


def train_cost(config: Mapping[str, Any], run: Run, size: DatasetSize, on_gpu: bool) -> Cost:
    """Seconds and MB of training ``run`` on a dataset of ``size`` (see the module docstring)."""
    train = config["studies"][run.study]["train"]
    dims, patch = spatial_dims(run.study), _patch(run)
    n_train, n_val = size.split("training"), size.split("validation")
    if patch is None:
        sample_voxels, samples = n_train.voxels, n_train.count
    else:
        sample_voxels, samples = patch**dims, n_train.count * train["samples_per_volume"]
    edge = _edge_of(sample_voxels, dims)
    net = Network.of(config, run, (edge,) * dims)
    overlap = _overlap(config, run.study)
    validations = math.ceil(train["epochs"] / train["val_interval"])
    val_voxels = n_val.count * seen_voxels(n_val.voxels, dims, patch, overlap)
    compute = net.train_seconds(train["epochs"] * samples * sample_voxels)
    compute += validations * net.infer_seconds(val_voxels)
    steps = train["epochs"] * math.ceil(samples / train["batch_size"])
    val_calls = n_val.count * forward_calls(
        n_val.voxels, dims, patch, overlap, _window_batch(config, run.study)
    )
    # the per-epoch checkpoint (weights and Adam moments) is file I/O: no faster on a GPU
    checkpoints = train["epochs"] * 3 * net.weight_mb * CHECKPOINT_S_PER_MB
    seconds = _device_seconds(config, compute, steps + validations * val_calls, on_gpu)
    seconds += checkpoints
    voxels = (n_train.count + n_val.count) * max(n_train.voxels, n_val.voxels)
    data_mb = voxels * DATASET_BYTES_PER_VOXEL / 2**20
    batch = train["batch_size"] * sample_voxels * net.activations * ACTIVATION_BYTES / 2**20
    mb = _base_mb(on_gpu) + data_mb + PARAM_COPIES * net.weight_mb + _host(batch, on_gpu)
    return Cost(seconds, mb)


def evaluate_cost(
    config: Mapping[str, Any],
    run: Run,
    sizes: Mapping[str, DatasetSize],
    on_gpu: bool,
    splits: tuple[str, ...] = ("test", "calibration"),
) -> Cost:
    """Seconds and MB of evaluating ``run`` on every test condition of ``splits`` (``predict``
    prices one image by the test split's); ``sizes`` maps each condition's test dataset
    (``meta.test_dataset``) to its size."""
    dims, patch = spatial_dims(run.study), _patch(run)
    overlap = _overlap(config, run.study)
    own = sizes[run.dataset].split("training")
    edge = patch if patch is not None else _edge_of(own.voxels, dims)
    net = Network.of(config, run, (edge,) * dims)
    window_batch = _window_batch(config, run.study)
    compute, calls, largest = 0.0, 0, 0
    for condition in evaluation_conditions(config, run):
        if condition["split"] not in splits:
            continue
        split = sizes[condition["meta"]["test_dataset"]].split(condition["split"])
        seen = seen_voxels(split.voxels, dims, patch, overlap)
        compute += split.count * (net.infer_seconds(seen) + split.voxels * SCORE_S_PER_VOXEL[dims])
        calls += split.count * forward_calls(split.voxels, dims, patch, overlap, window_batch)
        largest = max(largest, split.voxels)
    seconds = _device_seconds(config, compute, calls, on_gpu)
    window = patch**dims if patch is not None else largest
    mb = (
        _base_mb(on_gpu)
        + 2 * net.weight_mb
        + _host(window * net.activations * ACTIVATION_BYTES / 2**20, on_gpu)
        + largest * SCORE_BYTES_PER_VOXEL / 2**20
    )
    return Cost(seconds, mb)


def _overlap(config: Mapping[str, Any], study: str) -> float:
    return config["studies"][study]["inference"]["overlap"] if study == "context" else 0.0


def _window_batch(config: Mapping[str, Any], study: str) -> int:
    return config["studies"][study]["inference"]["sw_batch_size"] if study == "context" else 1


def _device_seconds(
    config: Mapping[str, Any], cpu_compute_s: float, calls: int, on_gpu: bool
) -> float:
    """Wall seconds of a job whose work takes ``cpu_compute_s`` on one CPU thread, in
    ``calls`` optimisation steps or forward passes: on a GPU ``gpu_speedup`` times faster plus
    ``GPU_STEP_S`` per call."""
    if not on_gpu:
        return START_S + cpu_compute_s
    speedup = config["resources"]["gpu_speedup"]
    return START_S + GPU_START_S + cpu_compute_s / speedup + calls * GPU_STEP_S


def _base_mb(on_gpu: bool) -> float:
    return BASE_MB + (GPU_HOST_MB if on_gpu else 0.0)


def _host(activation_mb: float, on_gpu: bool) -> float:
    """The activations' share of host memory: none on a GPU, where they live in GPU memory."""
    return 0.0 if on_gpu else activation_mb


def evaluation_sizes(config: Mapping[str, Any], run: Run, root: str | Path = ".") -> dict:
    """The size of every dataset ``run`` is evaluated on (its own and, for the texture study,
    the other alphas'), keyed by name."""
    names = {run.dataset} | {c["meta"]["test_dataset"] for c in evaluation_conditions(config, run)}
    return {name: dataset_size(config, name, root) for name in names}


def predict_cost(config: Mapping[str, Any], on_gpu: bool, root: str | Path = ".") -> Cost:
    """Segmenting the ``predict.images`` folder: every image by every candidate run, each image
    costing what one of the run's own test images costs to evaluate (an upper bound: new images
    are resampled to the run's input size, and scoring needs no label)."""
    runs = {s: study_runs(config, s) for s in enabled_studies(config)}
    plan = predict_plan(config, runs)
    if plan is None:
        return Cost(START_S, BASE_MB)
    folder = Path(root) / plan.images
    images = sum(1 for p in folder.glob("*.nii*")) if folder.is_dir() else 1
    seconds, mb = START_S, BASE_MB
    for run in plan.runs:
        sizes = evaluation_sizes(config, run, root)
        own = evaluate_cost(config, run, sizes, on_gpu, splits=("test",))
        per_image = (own.seconds - START_S) / max(sizes[run.dataset].split("test").count, 1)
        seconds += images * per_image
        mb = max(mb, own.mb)
    return Cost(seconds, mb)


# ---- data rules ---------------------------------------------------------------------------------


def _images(size: DatasetSize) -> tuple[int, int]:
    """(images over all splits, voxels of the largest)."""
    splits = size.splits.values()
    return sum(s.count for s in splits), max((s.voxels for s in splits), default=0)


def generate_cost(config: Mapping[str, Any], name: str) -> Cost:
    """Generating a synthetic dataset (a texture-study alpha level or a named one)."""
    size = dataset_size(config, name)
    images, voxels = _images(size)
    per_voxel = SPHERES_S_PER_VOXEL if size.dims == 3 else TEXTURE_S_PER_VOXEL
    return Cost(
        START_S + images * voxels * per_voxel, BASE_MB + voxels * SCORE_BYTES_PER_VOXEL / 2**20
    )


def perturb_cost(config: Mapping[str, Any], dataset: str, root: str | Path = ".") -> Cost:
    """Perturbing a dataset's test split at every configured severity."""
    test = dataset_size(config, dataset, root).split("test")
    severities = len(config["studies"]["perturbation"]["severities"])
    seconds = START_S + test.count * severities * test.voxels * PERTURB_S_PER_VOXEL
    return Cost(seconds, BASE_MB + test.voxels * SCORE_BYTES_PER_VOXEL / 2**20)


def prepare_cost(config: Mapping[str, Any], name: str) -> Cost:
    """Preparing a real dataset: every raw case read and resampled (or its slices resized);
    memory for the largest raw case and its resampled volume as float64 (8 bytes) a few times
    over (SCORE_BYTES_PER_VOXEL per voxel, as scoring holds about as many copies)."""
    bound = raw_bound(config["datasets"][name])
    seconds = START_S + bound.cases * bound.raw_voxels * PREPARE_S_PER_VOXEL
    largest = max(bound.raw_voxels, bound.volume_voxels)
    return Cost(seconds, BASE_MB + largest * SCORE_BYTES_PER_VOXEL / 2**20)


def bundled_cost() -> Cost:
    """Writing a bundled dataset (``data/bundled_anatomy.py``): the template and its tissue map
    read, thresholded and cut into slabs; priced like a prepared dataset of one raw volume
    (measured: 0.5 s and 140 MB peak for mni152_wm on the 2-core development machine)."""
    voxels = math.prod(MNI152_SHAPE)
    seconds = START_S + voxels * PREPARE_S_PER_VOXEL
    return Cost(seconds, BASE_MB + voxels * SCORE_BYTES_PER_VOXEL / 2**20)


# ---- tables -------------------------------------------------------------------------------------


def per_image_rows(config: Mapping[str, Any], study: str, root: str | Path = ".") -> int:
    """Rows of a study's per-image table: every model run's test images over its conditions
    (each row also has ``len(FNR_THRESHOLDS)`` rows in the FNR table). Runs differing only in
    architecture or seed share their conditions, so each dataset's are counted once."""
    runs_per_dataset: dict[tuple[str, str], tuple[Run, int]] = {}
    for run in study_runs(config, study):
        key = (run.dataset, run.patch)
        first, count = runs_per_dataset.get(key, (run, 0))
        runs_per_dataset[key] = (first, count + 1)
    rows = 0
    for run, count in runs_per_dataset.values():
        sizes = evaluation_sizes(config, run, root)
        for condition in evaluation_conditions(config, run):
            rows += count * sizes[condition["meta"]["test_dataset"]].split(condition["split"]).count
    return rows


def table_cost(rows: int) -> Cost:
    """A job reading, joining and writing ``rows`` per-image rows (with their FNR rows)."""
    return Cost(START_S + rows * TABLE_S_PER_ROW, BASE_MB + rows * TABLE_BYTES_PER_ROW / 2**20)


def analysis_cost(config: Mapping[str, Any], rows: int) -> Cost:
    """The analysis of ``rows`` per-image rows: the table work plus its bootstrap resamples."""
    tables = table_cost(rows)
    resamples = config["analysis"]["n_bootstrap"]
    return Cost(tables.seconds + rows * resamples * ANALYSIS_S_PER_ROW_RESAMPLE, tables.mb)


# ---- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What a job asks the scheduler for: ``runtime`` in minutes and ``mem_mb``."""

    runtime: int
    mem_mb: int


def request(cost: Cost, settings: Mapping[str, Any], attempt: int = 1) -> Request:
    """``cost`` with the safety factors, the minimum runtime, the attempt number and the
    maximum runtime applied (``settings``: the config's ``resources`` section)."""
    seconds = settings["runtime_factor"] * cost.seconds
    minutes = max(settings["min_runtime"], math.ceil(seconds / 60)) * attempt
    if settings["max_runtime"] is not None:
        minutes = min(minutes, settings["max_runtime"])
    return Request(minutes, math.ceil(settings["mem_factor"] * cost.mb) * attempt)


#: The rules whose jobs can use a GPU (they declare ``resources: gpu=1``).
#: The GPU rules with one job per model run, and the one that segments new images.
RUN_GPU_RULES = ("train_model", "evaluate_model")
GPU_RULES = (*RUN_GPU_RULES, "predict_images")


def rule_cost(
    config: Mapping[str, Any], rule: str, wildcards: Mapping[str, str], root: str | Path = "."
) -> Cost:
    """The :class:`Cost` of one job of ``rule`` (wildcard values ``wildcards``).

    Raises:
        ValueError: for a rule without a cost model, naming the rules that have one.
    """
    on_gpu = rule in GPU_RULES and config["device"] != "cpu"
    if rule == "predict_images":
        return predict_cost(config, on_gpu, root)
    if rule in GPU_RULES:
        run = Run(
            wildcards["study"], wildcards["dataset"], wildcards["arch"], wildcards["patch"],
            int(wildcards["seed"]),
        )  # fmt: skip
        if rule == "train_model":
            return train_cost(config, run, dataset_size(config, run.dataset, root), on_gpu)
        return evaluate_cost(config, run, evaluation_sizes(config, run, root), on_gpu)
    if rule == "generate_texture_dataset":
        name = texture_dataset_name(wildcards["direction"], float(wildcards["alpha"]))
        return generate_cost(config, name)
    if rule == "generate_synthetic_dataset":
        return generate_cost(config, wildcards["name"])
    if rule == "generate_authors_dataset":
        return generate_cost(config, authors_dataset_name(wildcards["dataset"]))
    if rule == "perturb_test_split":
        return perturb_cost(config, wildcards["dataset"], root)
    if rule == "prepare_dataset":
        return prepare_cost(config, wildcards["name"])
    if rule == "bundled_anatomy":
        return bundled_cost()
    if rule == "aggregate_study" or (
        rule == "plot_figure" and wildcards["figure"] not in ANALYSIS_FIGURES
    ):
        study = wildcards.get("study") or study_of_figure(wildcards["figure"])
        return table_cost(per_image_rows(config, study, root))
    if rule in ("analyze", "build_report", "plot_figure"):
        rows = sum(per_image_rows(config, s, root) for s in enabled_studies(config))
        return analysis_cost(config, rows) if rule == "analyze" else table_cost(rows)
    raise ValueError(f"no cost model for rule {rule!r}; known: {', '.join(COSTED_RULES)}")


#: The rules :func:`rule_cost` knows.
COSTED_RULES = (
    *GPU_RULES,
    "generate_texture_dataset",
    "generate_synthetic_dataset",
    "generate_authors_dataset",
    "perturb_test_split",
    "prepare_dataset",
    "bundled_anatomy",
    "aggregate_study",
    "plot_figure",
    "analyze",
    "build_report",
)


# ---- the grid's cost ----------------------------------------------------------------------------


def gpu_rule_totals(config: Mapping[str, Any], root: str | Path = ".") -> dict[tuple, dict]:
    """Per GPU rule and study over every model run of ``config``: jobs, the expected device
    hours (sum of the estimates, no runtime factor), the requested hours (sum of the runtimes
    asked for) and the largest single request. (``predict_images``, one job for a folder of new
    images, is not part of a study's cost.)"""
    totals = {}
    for rule in RUN_GPU_RULES:
        for study in enabled_studies(config):
            costs = []
            for run in study_runs(config, study):
                wildcards = {"study": run.study, "dataset": run.dataset, "arch": run.arch,
                             "patch": run.patch, "seed": str(run.seed)}  # fmt: skip
                costs.append(rule_cost(config, rule, wildcards, root))
            requests = [request(cost, config["resources"]) for cost in costs]
            totals[(rule, study)] = {
                "jobs": len(costs),
                "expected_hours": sum(c.seconds for c in costs) / 3600,
                "requested_hours": sum(r.runtime for r in requests) / 60,
                "largest_runtime_min": max((r.runtime for r in requests), default=0),
                "largest_mem_mb": max((r.mem_mb for r in requests), default=0),
            }
    return totals


def main(argv: list[str] | None = None) -> int:
    """``python -m segrobust.spec.resources FILE...``: the GPU rules' totals for the config
    Snakemake builds from the files (merged in order, like the Snakefile's configfile followed
    by ``--configfile``; schema defaults filled in)."""
    import argparse
    import sys

    import yaml
    from snakemake.utils import update_config, validate

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="+", help="config files, e.g. config/config.yaml config/paper.yaml"
    )
    args = parser.parse_args(argv)
    config: dict[str, Any] = {}
    for path in args.files:
        update_config(config, yaml.safe_load(Path(path).read_text()))
    schema = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
    validate(config, str(schema))
    on_gpu = config["device"] != "cpu"
    caveat = f" ({GPU_CAVEAT})" if on_gpu else ""
    if on_gpu:
        print(f"estimates on a GPU, {GPU_CAVEAT} (gpu_speedup "
              f"{config['resources']['gpu_speedup']} assumed, runtime_factor "
              f"{config['resources']['runtime_factor']} in the requests)")  # fmt: skip
    else:
        print(f"estimates on one CPU thread (measured constants; runtime_factor "
              f"{config['resources']['runtime_factor']} in the requests)")  # fmt: skip
    totals = gpu_rule_totals(config)
    for (rule, study), total in totals.items():
        print(f"{rule} {study}: {total['jobs']} jobs, expected {total['expected_hours']:.0f} h, "
              f"requested {total['requested_hours']:.0f} h, largest request "
              f"{total['largest_runtime_min']} min / {total['largest_mem_mb']} MB")  # fmt: skip
    expected = sum(t["expected_hours"] for t in totals.values())
    requested = sum(t["requested_hours"] for t in totals.values())
    print(f"all GPU jobs: expected {expected:.0f} h, requested {requested:.0f} h{caveat}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tests of the perturbation registry: shared contract of every entry, then each perturbation's
own damage measure growing with severity."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, laplace

from segrobust.data.dataset import DatasetWriter, load_split
from segrobust.perturb import (
    PAPER_LEVELS,
    PERTURBATIONS,
    SEVERITIES,
    paper_level,
    perturb_test_split,
    perturbation_rng,
)
from segrobust.registry import UnknownNameError

EXPECTED = {
    "speckle",
    "background_blur",
    "gaussian_noise",
    "rician_noise",
    "bias_field",
    "ghosting",
    "motion",
    "gamma",
    "blur",
    "resolution",
}


#: First draw of perturbation_rng("case_000", "speckle", 2, 1).integers(1 << 30), pinned.
PINNED_DRAW = 1049447122


def scene(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A structured test image (smooth waves, a brighter ball, fine texture) and its ball label."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    waves = np.prod(
        [np.cos(2 * np.pi * g / p) for g, p in zip(grids, (9.0, 13.0, 7.0), strict=False)], axis=0
    )
    centre = [n / 2 for n in shape]
    radius = min(shape) / 4
    label = (sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2).astype(
        np.uint8
    )
    image = 0.4 + 0.15 * waves + 0.25 * label + 0.1 * rng.random(shape)
    return image, label


IMAGE_2D, LABEL_2D = scene((64, 64))
IMAGE_3D, LABEL_3D = scene((24, 24, 24))


def perturbed(
    name: str, severity: int, image=IMAGE_2D, label=LABEL_2D, seed: int = 7, options=None
):
    entry = PERTURBATIONS.get(name)
    return entry.apply(image, label, severity, np.random.default_rng(seed), options)


def strictly_increasing(values) -> bool:
    return bool(np.all(np.diff(values) > 0))


# --- registry and shared contract ---------------------------------------------------------------


def test_registry_holds_every_perturbation():
    assert set(PERTURBATIONS.names()) == EXPECTED


def test_unknown_perturbation_names_allowed_ones():
    with pytest.raises(UnknownNameError, match="allowed: .*speckle"):
        PERTURBATIONS.get("salt_and_pepper")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_documents_five_severities_with_units(name):
    entry = PERTURBATIONS.get(name)
    assert entry.name == name
    assert len(entry.severities) == len(SEVERITIES)
    for params in entry.severities:
        assert set(params) == set(entry.units)
    # The docstring states the grid: every parameter value appears in it.
    for params in entry.severities:
        for value in params.values():
            assert f"{value:g}" in entry.__doc__, (name, value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_shape_dtype_and_inputs_untouched(name, image, label):
    image_before, label_before = image.copy(), label.copy()
    for severity in SEVERITIES:
        out = perturbed(name, severity, image, label)
        assert out.shape == image.shape
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        assert not np.array_equal(out, image.astype(np.float32)), (name, severity)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(label, label_before)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_label_is_handed_over_read_only(name):
    seen = {}
    entry = PERTURBATIONS.get(name)

    def spy(image, label, **kwargs):
        seen["writeable"] = label.flags.writeable
        return entry.transform(image, label, **kwargs)

    replace(entry, transform=spy).apply(IMAGE_2D, LABEL_2D.copy(), 3, np.random.default_rng(0))
    assert seen["writeable"] is False


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_seed_same_image_other_seed_other_image(name):
    entry = PERTURBATIONS.get(name)
    first = perturbed(name, 3, seed=1)
    np.testing.assert_array_equal(first, perturbed(name, 3, seed=1))
    other = perturbed(name, 3, seed=2)
    if entry.random:
        assert not np.array_equal(first, other)
    else:
        np.testing.assert_array_equal(first, other)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intensity_range_is_relative(name):
    """Perturbing a * x + b gives a * (perturbed x) + b: parameters are relative to the image's
    own intensities, so CT in HU and ultrasound in [0, 1] get the same damage. Speckle is so only
    with its per-image ``minmax`` scaling (its default ``fixed`` acts on the [0, 1] range)."""
    options = {"scaling": "minmax"} if name == "speckle" else None
    scale, offset = 900.0, -400.0
    unit = perturbed(name, 4, options=options)
    shifted = perturbed(name, 4, image=IMAGE_2D * scale + offset, options=options)
    np.testing.assert_allclose((shifted - offset) / scale, unit, atol=2e-4)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3", None])
def test_bad_severity_names_allowed_values(severity):
    with pytest.raises(ValueError, match=r"speckle.*allowed: 1, 2, 3, 4, 5"):
        perturbed("speckle", severity)


def test_bad_shapes_are_rejected():
    entry = PERTURBATIONS.get("blur")
    with pytest.raises(ValueError, match="2D or 3D"):
        entry.apply(np.zeros(5), np.zeros(5, np.uint8), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="label shape"):
        entry.apply(IMAGE_2D, LABEL_2D[:10], 1, np.random.default_rng(0))


# --- seeding -------------------------------------------------------------------------------------


def test_perturbation_rng_is_stable_and_keyed():
    draw = perturbation_rng("case_000", "speckle", 2, 1).integers(1 << 30)
    assert draw == perturbation_rng("case_000", "speckle", 2, 1).integers(1 << 30)
    # Pinned: the stream must not change across Python processes or releases of this code.
    assert draw == PINNED_DRAW
    others = [
        perturbation_rng("case_001", "speckle", 2, 1),
        perturbation_rng("case_000", "gaussian_noise", 2, 1),
        perturbation_rng("case_000", "speckle", 3, 1),
        perturbation_rng("case_000", "speckle", 2, 2),
    ]
    assert all(rng.integers(1 << 30) != draw for rng in others)


@pytest.mark.parametrize("seed", [-1, 1.5, "1", True])
def test_perturbation_rng_rejects_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        perturbation_rng("case", "speckle", 1, seed)


# --- the papers' levels --------------------------------------------------------------------------


def test_paper_levels_are_the_papers_parameters():
    assert list(PAPER_LEVELS) == ["Hardest", "Harder", "Unperturbed", "Easier", "Easiest"]
    assert PAPER_LEVELS["Unperturbed"] is None

    def param(level):
        name, severity = PAPER_LEVELS[level]
        return name, PERTURBATIONS.get(name).parameters(severity)

    assert param("Harder") == ("speckle", {"var": 0.1})
    assert param("Hardest") == ("speckle", {"var": 0.3})
    assert param("Easier") == ("background_blur", {"sigma": 3.0})
    assert param("Easiest") == ("background_blur", {"sigma": 7.0})


def test_paper_level_lookup():
    assert paper_level("speckle", 4) == "Hardest"
    assert paper_level("background_blur", 2) == "Easier"
    assert paper_level("none", 0) == "Unperturbed"
    assert paper_level("speckle", 5) is None
    assert paper_level("gamma", 2) is None


# --- each perturbation's damage grows with severity ---------------------------------------------


@pytest.mark.parametrize("name", ["speckle", "gaussian_noise", "rician_noise"])
@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_noise_std_grows_with_severity(name, image, label):
    stds = [np.std(perturbed(name, s, image, label) - image) for s in SEVERITIES]
    assert strictly_increasing(stds), stds


def test_gaussian_noise_std_is_a_fraction_of_the_range():
    span = IMAGE_2D.max() - IMAGE_2D.min()
    std = np.std(perturbed("gaussian_noise", 1) - IMAGE_2D)
    assert 0.9 * 0.04 * span < std < 1.05 * 0.04 * span


def test_speckle_is_multiplicative():
    """Pixels at 0 carry no speckle; with minmax scaling neither do those at the image minimum."""
    image = IMAGE_2D.copy()
    image[:8] = 0.0
    image[8:16] = 0.2
    fixed = perturbed("speckle", 3, image=image)
    np.testing.assert_array_equal(fixed[:8], 0.0)
    assert np.std(fixed[8:16] - image[8:16]) > 0.05
    minmax = perturbed("speckle", 3, image=image + 0.1, options={"scaling": "minmax"})
    np.testing.assert_allclose(minmax[:8], 0.1, atol=1e-6)
    assert np.std(minmax[8:] - image[8:] - 0.1) > 0.05


# The 30..230 example: rows of 30, 130 and 230 grey levels stored as /255 (the 2D data contract).
GREY = np.repeat(np.array([30.0, 130.0, 230.0])[:, None], 40000, axis=1) / 255.0
GREY_LABEL = np.zeros(GREY.shape, np.uint8)


def speckle_sd_in_grey_levels(scaling: str) -> np.ndarray:
    """Noise sd (grey levels) of each row of GREY under speckle var 0.01 (an sd of 0.1 in n)."""
    entry = PERTURBATIONS.get("speckle")
    out = entry.transform(GREY, GREY_LABEL, var=0.01, rng=np.random.default_rng(0), scaling=scaling)
    return np.std((out - GREY) * 255.0, axis=1)


def test_speckle_fixed_scaling_is_relative_to_the_full_range():
    """fixed: a pixel's noise sd is 0.1 x its grey level, as the papers' uint8 images got from
    skimage: 3 at 30, 13 at 130 (headroom to 255 is 9.6 sd: no clipping); at 230 the noise is
    clipped at 255 (headroom 25 = 1.09 sd of 23), so less than 23 but above 13."""
    sd30, sd130, sd230 = speckle_sd_in_grey_levels("fixed")
    assert sd30 == pytest.approx(3.0, rel=0.02)  # 40 000 pixels: relative sd error 0.35 %
    assert sd130 == pytest.approx(13.0, rel=0.02)
    assert 13.0 < sd230 < 23.0


def test_speckle_minmax_scaling_is_relative_to_the_image_range():
    """minmax: the image is mapped 30..230 -> 0..1 first, so a pixel's noise sd is 0.1 x (grey
    level - 30): none at 30, 10 at 130; 230 maps to 1 and is clipped from above."""
    sd30, sd130, sd230 = speckle_sd_in_grey_levels("minmax")
    assert sd30 == 0.0
    assert sd130 == pytest.approx(10.0, rel=0.02)
    assert 0.0 < sd230 < 20.0


def test_speckle_fixed_scaling_keeps_zero_to_one_and_rejects_other_ranges():
    out = perturbed("speckle", 5, image=GREY, label=GREY_LABEL)
    assert out.min() >= 0.0 and out.max() == pytest.approx(1.0)  # clipped at 1 as skimage does
    with pytest.raises(ValueError, match=r"scaling 'fixed' needs an image in \[0, 1\].*minmax"):
        perturbed("speckle", 2, image=GREY * 255.0, label=GREY_LABEL)


def test_speckle_default_scaling_is_fixed():
    entry = PERTURBATIONS.get("speckle")
    assert entry.options == {"scaling": ("fixed", "minmax")}
    assert entry.resolve_options() == {"scaling": "fixed"}
    np.testing.assert_array_equal(
        perturbed("speckle", 2), perturbed("speckle", 2, options={"scaling": "fixed"})
    )
    assert not np.array_equal(
        perturbed("speckle", 2), perturbed("speckle", 2, options={"scaling": "minmax"})
    )


def test_unknown_options_and_values_name_the_allowed_ones():
    with pytest.raises(ValueError, match=r"speckle.*option scaling = 'dtype'.*fixed, minmax"):
        perturbed("speckle", 2, options={"scaling": "dtype"})
    with pytest.raises(ValueError, match=r"speckle.*unknown option\(s\) clip; allowed: scaling"):
        perturbed("speckle", 2, options={"clip": True})
    with pytest.raises(ValueError, match=r"'blur'.*unknown option\(s\) scaling; allowed: \(none\)"):
        perturbed("blur", 2, options={"scaling": "fixed"})


def test_perturbed_test_split_applies_and_records_the_options(tmp_path):
    source = tmp_path / "source"
    with DatasetWriter(source, provenance={"source": "test"}) as writer:
        for split in ("training", "validation", "test"):
            writer.add(f"case_{split}", IMAGE_2D, LABEL_2D, split=split, spacing=(1.0, 1.0))
    (clean,) = load_split(source, "test")
    fixed, minmax = tmp_path / "fixed", tmp_path / "minmax"
    perturb_test_split(source, "speckle", [2], seed=0, out_dir=fixed)
    perturb_test_split(source, "speckle", [2], 0, minmax, options={"scaling": "minmax"})
    for out, scaling in ((fixed, "fixed"), (minmax, "minmax")):
        provenance = json.loads((out / "s2" / "provenance.json").read_text())
        assert provenance["options"] == {"scaling": scaling}
        (case,) = load_split(out / "s2", "test")
        rng = perturbation_rng("case_test", "speckle", 2, 0)
        expected = perturbed(
            "speckle", 2, image=clean.image, options={"scaling": scaling}, seed=rng
        )
        np.testing.assert_array_equal(case.image, expected)
    with pytest.raises(ValueError, match="option scaling = 'dtype'"):
        perturb_test_split(
            source, "speckle", [2], 0, tmp_path / "bad", options={"scaling": "dtype"}
        )
    assert not (tmp_path / "bad").exists()


def test_bias_field_deviation_grows_with_severity():
    lo = IMAGE_2D.min()
    inside = IMAGE_2D > lo + 1e-3
    deviation = []
    for s in SEVERITIES:
        ratio = (perturbed("bias_field", s)[inside] - lo) / (IMAGE_2D[inside] - lo)
        deviation.append(np.mean(np.abs(np.log(ratio))))
    assert strictly_increasing(deviation), deviation


def test_bias_field_is_a_cubic_polynomial_in_log_space():
    """log(perturbed / clean) (above the minimum) is fitted exactly by a polynomial of degree 3
    in each coordinate: the field is smooth and multiplicative."""
    lo = IMAGE_2D.min()
    out = perturbed("bias_field", 3).astype(np.float64)
    y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in IMAGE_2D.shape], indexing="ij")
    keep = IMAGE_2D - lo > 0.1
    log_ratio = np.log((out[keep] - lo) / (IMAGE_2D[keep] - lo))
    design = np.stack([x[keep] ** i * y[keep] ** j for i in range(4) for j in range(4)], axis=1)
    coef, *_ = np.linalg.lstsq(design, log_ratio, rcond=None)
    residual = log_ratio - design @ coef
    assert np.var(log_ratio) > 0.01
    assert np.var(residual) < 1e-8 * np.var(log_ratio) + 1e-10


@pytest.mark.parametrize("name", ["ghosting", "motion"])
@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_artefact_energy_grows_with_severity(name, image, label):
    energy = [
        np.mean([np.sum((perturbed(name, s, image, label, seed=k) - image) ** 2) for k in range(3)])
        for s in SEVERITIES
    ]
    assert strictly_increasing(energy), energy


def test_ghosts_are_shifted_copies():
    """A single bright dot gets faint copies at multiples of 1 / num_ghosts of the field of view
    along the phase-encoding axis, and nothing elsewhere."""
    image = np.zeros((70, 70))
    image[5, 5] = 1.0
    out = perturbed("ghosting", 5, image=image, label=np.zeros((70, 70), np.uint8))
    ghosts = [out[5 + 10 * m, 5] for m in range(1, 7)] + [out[5, 5 + 10 * m] for m in range(1, 7)]
    assert np.sum(np.abs(ghosts) > 0.05) == 6  # 7 ghosts: shifts of 10 pixels, on one axis
    assert abs(out[40, 40]) < 1e-6


def test_motion_keeps_the_object_in_place():
    """The k-space centre keeps the original pose: the perturbed image correlates best with
    the clean one unshifted."""
    out = perturbed("motion", 5).astype(np.float64)
    centred = lambda a: a - a.mean()  # noqa: E731
    best = max(
        ((dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)),
        key=lambda d: np.sum(centred(np.roll(out, d, (0, 1))) * centred(IMAGE_2D)),
    )
    assert best == (0, 0)


def test_gamma_moves_further_from_identity_and_keeps_range():
    outs = [perturbed("gamma", s) for s in SEVERITIES]
    distance = [np.mean(np.abs(o - IMAGE_2D)) for o in outs]
    assert strictly_increasing(distance), distance
    for out in outs:
        assert out.min() == pytest.approx(IMAGE_2D.min(), abs=1e-6)
        assert out.max() == pytest.approx(IMAGE_2D.max(), abs=1e-5)


def laplacian_energy(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    lap = laplace(image.astype(np.float64), mode="reflect") ** 2
    return float(lap[mask].mean() if mask is not None else lap.mean())


@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_blur_removes_high_frequencies_monotonically(image, label):
    energy = [laplacian_energy(image)] + [
        laplacian_energy(perturbed("blur", s, image, label)) for s in SEVERITIES
    ]
    assert strictly_increasing(energy[::-1]), energy


def high_band_energy(image: np.ndarray, cutoff: float = 0.2) -> float:
    """Spectral energy above ``cutoff`` cycles per pixel along any axis."""
    spectrum = np.abs(np.fft.fftn(image - image.mean())) ** 2
    freqs = np.meshgrid(*[np.abs(np.fft.fftfreq(n)) for n in image.shape], indexing="ij")
    return float(spectrum[np.max(freqs, axis=0) > cutoff].sum())


@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_resolution_loss_removes_more_high_frequencies(image, label):
    outs = [perturbed("resolution", s, image, label) for s in SEVERITIES]
    for cutoff in (0.1, 0.2):
        energy = [high_band_energy(image, cutoff)] + [high_band_energy(o, cutoff) for o in outs]
        assert strictly_increasing(energy[::-1]), (cutoff, energy)


@pytest.mark.parametrize(
    "image,label", [(IMAGE_2D, LABEL_2D), (IMAGE_3D, LABEL_3D)], ids=["2d", "3d"]
)
def test_background_blur_keeps_foreground_and_smooths_background(image, label):
    background = binary_erosion(label == 0, iterations=2)
    energy = [laplacian_energy(image, background)]
    for s in SEVERITIES:
        out = perturbed("background_blur", s, image, label)
        fg = label == 1
        np.testing.assert_array_equal(out[fg], image[fg].astype(np.float32))
        energy.append(laplacian_energy(out, background))
    assert strictly_increasing(energy[::-1]), energy


def test_background_blur_does_not_leak_foreground_into_background():
    """The background average uses background pixels only: a very bright object leaves the
    background values within the clean background's range (no halo)."""
    image = IMAGE_2D.copy()
    image[LABEL_2D == 1] = 50.0
    out = perturbed("background_blur", 5, image=image)
    bg = LABEL_2D == 0
    assert out[bg].max() <= image[bg].max() + 1e-5
    assert out[bg].min() >= image[bg].min() - 1e-5


def test_background_blur_of_all_foreground_is_identity():
    label = np.ones_like(LABEL_2D)
    np.testing.assert_array_equal(
        perturbed("background_blur", 3, label=label), IMAGE_2D.astype(np.float32)
    )

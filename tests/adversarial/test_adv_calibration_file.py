"""Issue 22, case 6 (calibration): a tampered ``calibration.json`` is refused when it is loaded,
naming the file and the field.

Wrong types, NaN or a huge array used to fail on every image without naming the file; a NaN FNR
curve was accepted, and all-(-1) scores gave "Dice >= 1.00" for every image. The file is now
checked against a JSON schema and for what a schema cannot express
(``segrobust.guarantees.calibration_schema``) before predict uses it, and predict writes nothing.

The applicability check (format 3, issue 21) is held to the same rule: a block that could make
every image pass (a neighbour count above the number of reference images gives every score
infinity, so every p-value is 1), reference images that are not the calibration images, ragged
or non-finite embeddings, out-of-range tuning records are each refused naming the field.
"""

from __future__ import annotations

import json
import shutil

import pytest
from calibrated import calibrated_run, good_images
from sandbox import make_sandbox

from segrobust.guarantees import calibration_schema
from segrobust.guarantees.calibration_file import CALIBRATION_FILE, Calibration, CalibrationError
from segrobust.predict.batch import PredictError, predict_folder

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return calibrated_run(tmp_path_factory.mktemp("calibration_file"))


def _set(path, value):
    """A tamper that sets the field at ``path`` (keys and indices) to ``value``."""

    def tamper(document):
        *parents, last = path
        target = document
        for key in parents:
            target = target[key]
        target[last] = value(target[last]) if callable(value) else value

    return tamper


def _reverse_scores(document):
    document["dice_bound"]["scores"] = sorted(document["dice_bound"]["scores"], reverse=True)
    if len(set(document["dice_bound"]["scores"])) < 2:
        document["dice_bound"]["scores"][0] += 0.5


def _all_minus_one(document):
    document["dice_bound"]["scores"] = [-1.0] * document["dice_bound"]["n"]


def _check(document):
    return document["applicability"]["check"]


def _foreign_reference_image(document):
    _check(document)["statistics"][0][0] += 0.5  # complexity of no calibration image


def _repeated_reference_image(document):
    statistics = _check(document)["statistics"]
    statistics[1] = list(statistics[0])


def _ragged_embeddings(document):
    _check(document)["embeddings"][1].pop()


def _falling_fnr(document):
    document["fnr"]["mean_fnr"][-1] = 0.0
    document["fnr"]["mean_fnr"][-2] = 0.5


TAMPERS = {
    "scores as text": (_set(["dice_bound", "scores"], "abc"), "field dice_bound.scores: 'abc'"),
    "n as text": (_set(["dice_bound", "n"], "12"), "field dice_bound.n: '12'"),
    "negative seed": (_set(["run", "seed"], -1), "field run.seed: -1"),
    "4D model": (_set(["model", "spatial_dims"], 4), "field model.spatial_dims: 4"),
    "huge resize": (_set(["preprocessing", "size"], [100000, 100000]), "field preprocessing.size"),
    "window as text": (_set(["inference"], "yes"), "field inference: 'yes'"),
    "NaN score": (_set(["dice_bound", "scores", 0], NAN), "field dice_bound.scores[0]: nan"),
    "infinite range": (_set(["ranges", "noise_sigma", 1], INF), "field ranges.noise_sigma[1]: inf"),
    "huge array": (_set(["dice_bound", "scores"], [0.0] * 200_000), "field dice_bound.scores: "),
    "NaN FNR curve": (_set(["fnr", "mean_fnr"], lambda c: [NAN] * len(c)), "field fnr.mean_fnr["),
    "null FNR curve": (_set(["fnr", "mean_fnr"], lambda c: [None] * len(c)),
                       "field fnr.mean_fnr: null values with fnr.n ="),
    "falling FNR curve": (_falling_fnr, "a false-negative rate never falls"),
    "all -1 scores": (_all_minus_one, "-1 is not a possible quality - dice of these calibration"),
    "unsorted scores": (_reverse_scores, "field dice_bound.scores: not sorted ascending"),
    "scores short of n": (_set(["dice_bound", "scores"], lambda s: s[:-1]),
                          "field dice_bound.n: 12, but dice_bound.scores holds 11 scores"),
    "widened range": (_set(["ranges", "noise_sigma"], [0.0, 1000.0]),
                      "field ranges.noise_sigma: [0.0, 1000.0], but the calibration images"),
    "lost image value": (_set(["calibration_images", "complexity"], lambda v: v[:-1]),
                         "field calibration_images.complexity: 11 values for 12 images"),
    "mean Dice": (_set(["mean_dice"], lambda d: min(1.0, d + 0.3)), "field mean_dice: "),
    # the applicability check (format 3)
    "check as text": (_set(["applicability", "check"], "abc"), "field applicability.check: 'abc'"),
    "tuning as list": (_set(["applicability", "tuning"], [1, 2]),
                       "field applicability.tuning: [1, 2]"),
    "other features": (_set(["applicability", "check", "features"], ["complexity", "embedding"]),
                       "field applicability.check.features: "),
    "NaN embedding": (_set(["applicability", "check", "embeddings", 0, 0], NAN),
                      "field applicability.check.embeddings[0][0]: nan"),
    "infinite statistic": (_set(["applicability", "check", "statistics", 2, 2], INF),
                           "field applicability.check.statistics[2][2]: inf"),
    "huge embedding value": (_set(["applicability", "check", "embeddings", 0, 0], 1e300),
                             "field applicability.check.embeddings[0][0]: 1e+300"),
    "statistic out of range": (_set(["applicability", "check", "statistics", 0, 1], 7.0),
                               "field applicability.check.statistics[0][1]: 7.0"),
    "statistics row too short": (_set(["applicability", "check", "statistics", 0], [0.1]),
                                 "field applicability.check.statistics[0]: [0.1]"),
    "embedding too wide": (_set(["applicability", "check", "embeddings", 0], [0.0] * 5000),
                           "field applicability.check.embeddings[0]: "),
    "ragged embeddings": (_ragged_embeddings,
                          "field applicability.check.embeddings[1]: 7 values, the first row has 8"),
    "embeddings short of statistics": (
        _set(["applicability", "check", "embeddings"], lambda e: e[:-1]),
        "field applicability.check.embeddings: 11 rows for 12 statistics rows"),
    "neighbours above n": (_set(["applicability", "check", "n_neighbours"], 1000),
                           "field applicability.check.n_neighbours: 1000"),
    "neighbours not min(5, n)": (_set(["applicability", "check", "n_neighbours"], 1),
                                 "field applicability.check.n_neighbours: 1, but the check of 12"),
    "foreign reference image": (_foreign_reference_image,
                                "field applicability.check.statistics[0]: "),
    "repeated reference image": (_repeated_reference_image,
                                 "field applicability.check.statistics[1]: "),
    "module path": (_set(["applicability", "embedding_module"], "../../model"),
                    "field applicability.embedding_module: '../../model'"),
    "tuning p-value above 1": (_set(["applicability", "tuning", "p_value", 0], 2.0),
                               "field applicability.tuning.p_value[0]: 2.0"),
    "tuning Dice as text": (_set(["applicability", "tuning", "dice", 0], "0.9"),
                            "field applicability.tuning.dice[0]: '0.9'"),
    "tuning list short": (_set(["applicability", "tuning", "dice"], lambda d: d[:-1]),
                          "field applicability.tuning.dice: 0 values for 1 tuning images"),
}  # fmt: skip


def test_the_pipelines_own_file_passes(run):
    document = json.loads((run / CALIBRATION_FILE).read_text())
    assert document["dice_bound"]["n"] == 12 and document["fnr"]["n"] > 0
    check = document["applicability"]["check"]
    assert len(check["statistics"]) == len(check["embeddings"]) == 12
    assert len(document["applicability"]["tuning"]["kind"]) == 1  # the test image at position 0
    assert calibration_schema.document_problem(document) is None
    Calibration.read(run / CALIBRATION_FILE)


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_tampered_calibration_file_is_refused_naming_the_file_and_field(run, tmp_path, tamper):
    change, expected = TAMPERS[tamper]
    sandbox = make_sandbox(tmp_path)
    shared = shutil.copytree(run, sandbox.root / "shared")
    path = shared / CALIBRATION_FILE
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))  # NaN and Infinity as Python's json writes them
    images = good_images(sandbox.root / "images", 1)
    before = sandbox.snapshot()
    with pytest.raises(PredictError) as err:
        predict_folder(images, sandbox.target, model_paths=[shared], log=lambda line: None)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert message.endswith("; re-run rule evaluate_model for this run")
    sandbox.assert_untouched(before)


def test_an_oversized_calibration_file_is_not_read(run, tmp_path, monkeypatch):
    shared = shutil.copytree(run, tmp_path / "shared")
    size = (shared / CALIBRATION_FILE).stat().st_size
    monkeypatch.setattr(calibration_schema, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(CalibrationError) as err:
        Calibration.read(shared / CALIBRATION_FILE)
    assert str(err.value) == (
        f"{shared / CALIBRATION_FILE}: not a readable calibration file ({size} bytes, over the "
        f"{size - 1} a calibration file may have (100000 calibration images take about 15 MB, "
        "and the applicability check about 16.5 bytes per embedding channel per image more); "
        "it was not read)"
    )

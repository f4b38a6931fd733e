"""Issue 22, case 3: ``segrobust predict`` never deletes what it did not write.

``--out d/imgs --images d/imgs --overwrite`` used to leave no input images, ``--out d
--overwrite`` removed unrelated files in ``d``, and a symbolic link as ``--out`` failed only
after the whole batch. Now the output folder is checked before anything is loaded
(``segrobust.predict.output_folder``): not the images folder, inside it or around it (links in
the parents resolved), not a link; an existing folder is replaced only when it holds the marker
of an earlier predict output, and then only the files that marker lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from calibrated import calibrated_run, good_images
from sandbox import SENTINEL, make_sandbox, snapshot

from segrobust.atomic import OutputPathError
from segrobust.cli import main as cli_main
from segrobust.predict.batch import PredictError, predict_folder
from segrobust.predict.output_folder import MARKER


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return calibrated_run(tmp_path_factory.mktemp("predict_out"))


def _predict(run, images, out, overwrite=True, model=None):
    return predict_folder(
        images, out, model_paths=[model or run], overwrite=overwrite, log=lambda line: None
    )


def _user_files(folder: Path) -> None:
    (folder / "notes.txt").write_bytes(SENTINEL)
    (folder / "thesis").mkdir()
    (folder / "thesis" / "draft.tex").write_bytes(SENTINEL)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("same", "is the images folder"),
        ("parent", "contains the images folder"),
        ("inside", "lies inside the images folder"),
        ("same through a linked parent", "is the images folder"),
    ],
)
def test_an_output_folder_overlapping_the_images_is_refused_before_the_batch(
    run, tmp_path, layout, message
):
    sandbox = make_sandbox(tmp_path)
    data = sandbox.root / "d"
    images = good_images(data / "imgs", 2)
    _user_files(data)
    (sandbox.root / "link").symlink_to(data)
    out = {
        "same": images,
        "parent": data,
        "inside": images / "out",
        "same through a linked parent": sandbox.root / "link" / "imgs",
    }[layout]
    before = sandbox.snapshot()
    # the model does not exist: the refusal comes before any model is looked at
    with pytest.raises(PredictError, match=message):
        _predict(run, images, out, model=sandbox.root / "no_model")
    with pytest.raises(PredictError, match=message):
        _predict(run, images, out)
    assert snapshot(sandbox.root) == before


def test_the_command_line_says_so_and_exits_1(run, tmp_path, capsys):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "d" / "imgs", 2)
    before = sandbox.snapshot()
    code = cli_main(["predict", "--model", str(run), "--images", str(images), "--out",
                     str(images), "--overwrite", "--device", "cpu"])  # fmt: skip
    assert code == 1
    assert "is the images folder" in capsys.readouterr().err
    assert snapshot(sandbox.root) == before


def test_a_symbolic_link_as_output_folder_is_refused_before_the_batch(run, tmp_path):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "imgs", 1)
    elsewhere = sandbox.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_bytes(SENTINEL)
    out = sandbox.root / "out"
    out.symlink_to(elsewhere)
    before = sandbox.snapshot()
    with pytest.raises(PredictError, match=rf"{out} is a symbolic link \(to {elsewhere}\)"):
        _predict(run, images, out, model=sandbox.root / "no_model")
    assert snapshot(sandbox.root) == before


def test_a_folder_predict_did_not_write_is_not_overwritten(run, tmp_path):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "imgs", 1)
    out = sandbox.root / "d"
    out.mkdir()
    _user_files(out)
    before = sandbox.snapshot()
    with pytest.raises(
        PredictError, match=rf"not an output folder of segrobust predict \(no {MARKER}"
    ):
        _predict(run, images, out)
    with pytest.raises(PredictError, match="not empty"):
        _predict(run, images, out, overwrite=False)
    assert snapshot(sandbox.root) == before


def test_overwriting_replaces_only_what_the_earlier_batch_wrote(run, tmp_path):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "imgs", 3)
    out = sandbox.root / "out"
    _predict(run, images, out, overwrite=False)
    first = json.loads((out / MARKER).read_text())["files"]
    assert "masks/img2.nii.gz" in first and "predictions.csv" in first
    _user_files(out)
    (out / "masks" / "my_edit.nii.gz").write_bytes(SENTINEL)  # a user's file among the masks
    (images / "img2.nii.gz").unlink()  # the next batch has one image less
    _predict(run, images, out)
    second = json.loads((out / MARKER).read_text())["files"]
    assert "masks/img2.nii.gz" not in second and not (out / "masks" / "img2.nii.gz").exists()
    assert (out / "masks" / "img1.nii.gz").is_file()
    for kept in ("notes.txt", "thesis/draft.tex", "masks/my_edit.nii.gz"):
        assert (out / kept).read_bytes() == SENTINEL, kept
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "listed", ["../victim.txt", "notes.txt", "/etc/passwd", "masks/../../victim.txt", "masks"]
)
def test_a_marker_listing_other_files_is_refused_and_nothing_is_deleted(run, tmp_path, listed):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "imgs", 1)
    out = sandbox.root / "out"
    _predict(run, images, out, overwrite=False)
    _user_files(out)
    (sandbox.root / "victim.txt").write_bytes(SENTINEL)
    marker = json.loads((out / MARKER).read_text())
    marker["files"].append(listed)
    (out / MARKER).write_text(json.dumps(marker))
    before = sandbox.snapshot()
    with pytest.raises(PredictError, match=rf"{MARKER}: lists {listed!r}, not a file predict"):
        _predict(run, images, out)
    assert snapshot(sandbox.root) == before


def test_a_linked_mask_folder_or_a_users_file_in_the_way_changes_nothing(run, tmp_path):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "imgs", 2)
    out = sandbox.root / "out"
    _predict(run, images, out, overwrite=False)
    elsewhere = sandbox.root / "elsewhere"
    os.replace(out / "masks", elsewhere)
    (out / "masks").symlink_to(elsewhere)  # the listed masks now lead outside the folder
    before = sandbox.snapshot()
    with pytest.raises(OutputPathError, match="a folder on its way is a symbolic link"):
        _predict(run, images, out)
    assert snapshot(sandbox.root) == before
    (out / "masks").unlink()
    os.replace(elsewhere, out / "masks")
    marker = json.loads((out / MARKER).read_text())
    marker["files"].remove("masks/img1.nii.gz")  # now a file predict did not write
    (out / MARKER).write_text(json.dumps(marker))
    before = sandbox.snapshot()
    with pytest.raises(OutputPathError, match="it was not written by the output it replaces"):
        _predict(run, images, out)
    assert snapshot(sandbox.root) == before

"""The execution plumbing (issues 12.5, 15.2, 19): the job log and its timing lines, the console
lines a person follows, and the rule that the package decides nothing a job writes."""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from segrobust.execution import console, job

PACKAGE = Path(job.__file__).resolve().parent


def _snakemake(tmp_path, rule="train_model"):
    return SimpleNamespace(
        log=[str(tmp_path / "job.log")],
        rule=rule,
        threads=3,
        wildcards={"arch": "unet", "seed": "1"},
    )


def _absolute_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def test_the_execution_package_imports_no_other_segrobust_package():
    """Every layer may import it (the training loop marks its steps) without an import cycle,
    and nothing it imports can decide a job's outputs."""
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 4
    for path in modules:
        ours = {name for name in _absolute_imports(path) if name.split(".")[0] == "segrobust"}
        outside = {name for name in ours if not name.startswith("segrobust.execution")}
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_a_job_leaves_torchs_thread_count_alone(tmp_path):
    """The thread count changes float reduction order, so it is the computing layer's to set
    (segrobust.training.device.set_compute_threads), not the job runner's."""
    before = torch.get_num_threads()
    with job.job(_snakemake(tmp_path)) as log:
        log("working")
        assert torch.get_num_threads() == before
    assert "rule train_model: threads=3" in (tmp_path / "job.log").read_text()


def test_the_job_log_has_the_timing_lines_of_the_fixed_cost(tmp_path):
    job.mark("first_step")  # outside a job: nothing, no error
    before = time.time()
    with job.job(_snakemake(tmp_path)) as log:
        log("working")
        job.mark("first_step")
        job.mark("last_step")
    lines = (tmp_path / "job.log").read_text().splitlines()
    timing = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("timing")}
    assert list(timing) == ["process_start", "job_start", "first_step", "last_step", "exit"]
    started = float(timing["process_start"][0])
    assert started <= before  # this process started before the test body ran
    ms = 1e-3  # written to the millisecond
    job_start, exit_ = float(timing["job_start"][0]), float(timing["exit"][0])
    assert before - ms <= job_start <= exit_ <= time.time() + ms
    assert timing["exit"][1].startswith("cpu_s=") and timing["exit"][2].startswith("max_rss_mb=")
    assert any(line.endswith("working") for line in lines)


def test_the_log_records_the_traceback_of_a_failed_job(tmp_path, capfd):
    with pytest.raises(ValueError), job.job(_snakemake(tmp_path)):
        raise ValueError("bad input named here")
    text = (tmp_path / "job.log").read_text()
    assert "ValueError: bad input named here" in text and "timing exit" in text
    # the console says which job failed, why, and where its log is
    err = capfd.readouterr().err
    assert re.search(
        r"^segrobust: rule train_model \(arch=unet, seed=1\) failed: ValueError: bad input "
        r"named here; its log: .*job\.log$",
        err,
        re.MULTILINE,
    ), err


def test_progress_is_throttled_to_one_line_per_interval():
    now = [0.0]
    shown = []
    throttle = console.Throttle(shown.append, 30.0, clock=lambda: now[0])
    for t, message in [(10, "e1"), (29.9, "e2"), (31, "e3"), (45, "e4"), (61, "e5"), (200, "e6")]:
        now[0] = t
        throttle(message)
    assert shown == ["e3", "e5", "e6"]  # every ~30 s, or every epoch when epochs are longer


def test_console_lines_say_what_ended_how_well_how_long_and_where(capfd):
    line = console.train_summary(
        "texture texture-background-0.5/unet/pfull/seed1",
        {"best_val_dice": 0.81234, "best_epoch": 17}, 20, 45.4, "cuda:1 (NVIDIA H200)",
    )  # fmt: skip
    assert line == (
        "trained texture texture-background-0.5/unet/pfull/seed1: best val Dice 0.812 "
        "(epoch 17/20), 45 s on cuda:1 (NVIDIA H200)"
    )
    per_image = pd.DataFrame({
        "condition": ["clean", "clean", "clean", "speckle-s1", "speckle-s1"],
        "split": ["test", "test", "calibration", "test", "test"],
        "dice": [0.9, 0.7, 0.5, 0.4, 0.6],
    })  # fmt: skip
    line = console.evaluate_summary(
        "perturbation texture_demo/unet/pfull/seed1", per_image, 3.2, "cpu"
    )
    assert line == (
        "evaluated perturbation texture_demo/unet/pfull/seed1: test Dice 0.650 (4 images, 2 "
        "conditions), 3 s on cpu"
    )
    console.console(line)
    assert capfd.readouterr().err == f"segrobust: {line}\n"


def test_the_run_ends_with_the_report_and_the_models_trained(tmp_path):
    results = tmp_path / "results"
    for run in ("texture/models/a/unet/pfull/seed1", "context/models/s/unet/p16/seed1"):
        (results / run).mkdir(parents=True)
        (results / run / "model.pt").touch()
    log = tmp_path / "run.log"
    log.write_text(
        "localrule generate_texture_dataset:\nlocalrule train_model:\n    wildcards: ...\n"
        "Finished jobid: 3 (Rule: generate_texture_dataset)\nFinished jobid: 1 (Rule: "
        "train_model)\nlocalrule train_model:\nFinished jobid: 2 (Rule: train_model)\n"
        "localrule evaluate_model:\n"
    )
    report = results / "report" / "index.html"
    message = console.workflow_summary([str(log)], results, report)
    assert "no report yet" in message
    assert "2 trained model(s)" in message and "2 of them trained in this run" in message
    report.parent.mkdir()
    report.write_text("<html>")
    message = console.workflow_summary([str(log)], results, report)
    assert f"the report is {report.resolve()} (open it in a browser)" in message
    assert "0 of them" in console.workflow_summary(None, results, report)

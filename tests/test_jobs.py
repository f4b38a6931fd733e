"""The job runtime: preloaded children (issue 15.2), the console lines a person follows
(issue 12.5), the timing lines of the job log, and a job's GPU placement arguments."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from segrobust import jobs, preload
from segrobust.gpus import private_dir

SRC = str(Path(__file__).resolve().parents[1] / "src")
IDLE = 3.0  # seconds a test's server lives without work

_CLIENT = """
import sys, time
from segrobust.preload import PreloadUnavailable, run_in_server
try:
    status = run_in_server(sys.argv[1], preload=["probe_module"], started=time.time() - 5,
                           directory=sys.argv[2], idle_seconds=float(sys.argv[3]))
except PreloadUnavailable as exc:
    print(f"UNAVAILABLE {exc}", file=sys.stderr)
    sys.exit(99)
sys.exit(status)
"""

_PROBE = """
import os
with open(os.environ["PROBE_LOG"], "a") as log:
    log.write(f"imported in {os.getpid()}\\n")
"""


@pytest.fixture
def lab(tmp_path):
    """A socket directory, a preloadable probe module that logs each import, and a runner of
    job scripts through a fresh client process; waits at the end until the servers it started
    have exited on their own (idle) and removed their files."""
    # a short base: a socket path must fit AF_UNIX's ~107 bytes, pytest's tmp_path may not
    base = Path(tempfile.mkdtemp(prefix="sr-", dir="/tmp"))
    sockets = private_dir("preload", base=base)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "probe_module.py").write_text(_PROBE)
    probe_log = tmp_path / "imports.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(modules)]),
           "PROBE_LOG": str(probe_log)}  # fmt: skip

    def script(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    client = tmp_path / "client.py"  # a file, not -c: sys.path[0] is then the same for all runs
    client.write_text(_CLIENT)

    def start(path: Path, cwd: Path = tmp_path, **extra_env) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(client), str(path), str(sockets), str(IDLE), "arg1"],
            cwd=cwd, env={**env, **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def run(path: Path, **kw) -> subprocess.CompletedProcess:
        proc = start(path, **kw)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def imports() -> list[str]:
        return probe_log.read_text().splitlines() if probe_log.exists() else []

    yield SimpleNamespace(
        sockets=sockets, script=script, start=start, run=run, imports=imports, tmp=tmp_path
    )
    deadline = time.monotonic() + IDLE + 30
    while list(sockets.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(sockets.glob("*.sock")), "an idle server did not exit"
    # a server that served removes its lock and (empty) log too; one that failed keeps its log
    for lock in sockets.glob("*.lock"):
        assert lock.with_suffix(".log").stat().st_size > 0, f"{lock} left by a server that served"
    shutil.rmtree(base)


_SHOW = """
import os, sys
print("cwd", os.getcwd())
print("env", os.environ.get("JOB_VALUE"))
print("argv", sys.argv[1:])
print("preloaded", "probe_module" in sys.modules)
print("pid", os.getpid())
print("to stderr", file=sys.stderr)
"""


def test_jobs_run_in_one_preloaded_server_with_their_own_stdio_cwd_env_argv(lab):
    show = lab.script("show.py", _SHOW)
    work = lab.tmp / "work"
    work.mkdir()
    first = lab.run(show, cwd=work, JOB_VALUE="one")
    second = lab.run(show, cwd=lab.tmp, JOB_VALUE="two")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert f"cwd {work}" in first.stdout and f"cwd {lab.tmp}" in second.stdout
    assert "env one" in first.stdout and "env two" in second.stdout
    assert f"argv ['{show}', '{lab.sockets}', '{IDLE}', 'arg1']" in first.stdout  # the job's
    assert "preloaded True" in first.stdout and "to stderr" in second.stderr
    # imported once, by the server; each job ran in a child of its own
    assert len(lab.imports()) == 1
    server_pid = lab.imports()[0].split()[-1]
    child_pids = {line.split()[1] for r in (first, second) for line in r.stdout.splitlines()
                  if line.startswith("pid")}  # fmt: skip
    assert len(child_pids) == 2 and server_pid not in child_pids


def test_exit_status_and_traceback_come_back_to_the_job(lab):
    assert lab.run(lab.script("exit3.py", "import sys; sys.exit(3)")).returncode == 3
    failed = lab.run(lab.script("boom.py", "raise ValueError('boom in the child')"))
    assert failed.returncode == 1
    assert "Traceback" in failed.stderr and "ValueError: boom in the child" in failed.stderr
    killed = lab.run(lab.script("segv.py", "import os, signal; os.kill(os.getpid(), 9)"))
    assert killed.returncode == 128 + signal.SIGKILL
    assert len(lab.imports()) == 1  # one server served all three


_SLEEPER = """
import os, signal, sys, time
from pathlib import Path
def stop(signum, frame):
    Path("{flag}").write_text("terminated")
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
Path("{pid}").write_text(str(os.getpid()))
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie waits for its parent's reaping
            return stat.read().split()[2] != "Z"
    except OSError:  # gone in between
        return False


def _sleeper(lab, name):
    pid_file, flag = lab.tmp / f"{name}.pid", lab.tmp / f"{name}.flag"
    client = lab.start(lab.script(f"{name}.py", _SLEEPER.format(pid=pid_file, flag=flag)))
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert client.poll() is None, client.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client, int(pid_file.read_text()), flag


def test_sigterm_to_the_job_reaches_its_child(lab):
    client, child, flag = _sleeper(lab, "term")
    client.send_signal(signal.SIGTERM)  # what Snakemake sends a job it cancels
    assert client.wait(timeout=30) == 7
    assert flag.read_text() == "terminated"
    assert not _alive(child)


def test_a_job_killed_outright_takes_its_child_with_it(lab):
    client, child, flag = _sleeper(lab, "kill")
    client.send_signal(signal.SIGKILL)  # no code of the client runs
    client.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its job"
        time.sleep(0.05)
    assert not flag.exists()


def test_concurrent_jobs_start_one_server(lab):
    show = lab.script("show.py", _SHOW)
    clients = [lab.start(show) for _ in range(3)]
    assert [c.wait(timeout=120) for c in clients] == [0, 0, 0]
    assert len(lab.imports()) == 1


def test_a_preload_that_fails_to_import_leaves_the_job_to_its_own_process(lab):
    (lab.tmp / "modules" / "probe_module.py").write_text("raise ImportError('broken module')")
    result = lab.run(lab.script("show.py", _SHOW))
    assert result.returncode == 99  # PreloadUnavailable: nothing ran in a child
    assert "exited with status 1 while starting" in result.stderr
    assert "broken module" in result.stderr


def test_the_server_key_follows_library_edits_and_thread_settings(tmp_path, monkeypatch):
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    key = preload.server_key(["json"], watched=[source])
    assert preload.server_key(["json"], watched=[source]) == key
    source.write_text("x = 22\n")  # another size and mtime
    assert preload.server_key(["json"], watched=[source]) != key
    edited = preload.server_key(["json"], watched=[source])
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert preload.server_key(["json"], watched=[source]) != edited
    assert preload.server_key(["json", "csv"], watched=[source]) != edited


def test_a_shared_socket_directory_is_refused(tmp_path):
    base = tmp_path / "tmp"
    (base / f"segrobust-{os.getuid()}").mkdir(parents=True, mode=0o755)
    os.chmod(base / f"segrobust-{os.getuid()}", 0o755)
    with pytest.raises(PermissionError, match="not a private directory"):
        private_dir("preload", base=base)


# --- run_script: where main runs ---


def _snakemake(tmp_path, preload_on=True, rule="train_model", **resources):
    return SimpleNamespace(
        config={"execution": {"preload": preload_on,
                              "gpu_jobs_per_device": {"train_model": 4, "evaluate_model": 1}}},
        log=[str(tmp_path / "job.log")], rule=rule, threads=1,
        wildcards={"arch": "unet", "seed": "1"},
        resources=SimpleNamespace(get=lambda name, default=None: resources.get(name, default)),
    )  # fmt: skip


def test_run_script_falls_back_to_this_process_when_no_server_takes_the_job(
    tmp_path, monkeypatch, capfd
):
    def unavailable(*args, **kwargs):
        raise preload.PreloadUnavailable("no server here")

    monkeypatch.setattr(preload, "run_in_server", unavailable)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    ran = []
    jobs.run_script(ran.append, _snakemake(tmp_path))
    assert len(ran) == 1
    assert "no server here; this job imports torch itself" in capfd.readouterr().err


def test_run_script_exits_with_the_childs_status(tmp_path, monkeypatch):
    monkeypatch.setattr(preload, "run_in_server", lambda *a, **k: 5)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    ran = []
    with pytest.raises(SystemExit) as exited:
        jobs.run_script(ran.append, _snakemake(tmp_path))
    assert exited.value.code == 5 and ran == []


def test_preload_is_used_only_where_it_helps(tmp_path):
    config = _snakemake(tmp_path).config
    assert jobs.preload_wanted(config, {}) == preload.supported()
    assert not jobs.preload_wanted(config, {"SLURM_JOB_ID": "12"})
    assert not jobs.preload_wanted(_snakemake(tmp_path, preload_on=False).config, {})


def test_gpu_placement_reads_the_rules_sharing_and_resources(tmp_path):
    packed = jobs.gpu_placement(_snakemake(tmp_path, gpu=0, gpu_slots=1, gres="gpu:1"))
    assert packed == {"jobs_per_device": 4, "slots_per_gpu": 4, "holds_gpu_resource": True}
    whole = jobs.gpu_placement(_snakemake(tmp_path, rule="evaluate_model", gpu=1, gpu_slots=4))
    assert whole == {"jobs_per_device": 1, "slots_per_gpu": 4, "holds_gpu_resource": True}
    assert not jobs.gpu_placement(_snakemake(tmp_path))["holds_gpu_resource"]


# --- the job log and the console ---


def test_the_job_log_has_the_timing_lines_of_the_fixed_cost(tmp_path):
    jobs.mark("first_step")  # outside a job: nothing, no error
    before = time.time()
    with jobs.job(_snakemake(tmp_path)) as log:
        log("working")
        jobs.mark("first_step")
        jobs.mark("last_step")
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
    with pytest.raises(ValueError), jobs.job(_snakemake(tmp_path)):
        raise ValueError("bad input named here")
    text = (tmp_path / "job.log").read_text()
    assert "ValueError: bad input named here" in text and "timing exit" in text
    # the console says which job failed, why, and where its log is
    console = capfd.readouterr().err
    assert re.search(
        r"^segrobust: rule train_model \(arch=unet, seed=1\) failed: ValueError: bad input "
        r"named here; its log: .*job\.log$",
        console,
        re.MULTILINE,
    ), console


def test_progress_is_throttled_to_one_line_per_interval():
    now = [0.0]
    shown = []
    throttle = jobs.Throttle(shown.append, 30.0, clock=lambda: now[0])
    for t, message in [(10, "e1"), (29.9, "e2"), (31, "e3"), (45, "e4"), (61, "e5"), (200, "e6")]:
        now[0] = t
        throttle(message)
    assert shown == ["e3", "e5", "e6"]  # every ~30 s, or every epoch when epochs are longer


def test_console_lines_say_what_ended_how_well_how_long_and_where(capfd):
    line = jobs.train_summary(
        "texture texture-background-0.5/unet/pfull/seed1",
        {"best_val_dice": 0.81234, "best_epoch": 17}, 20, 45.4, "cuda:1 (NVIDIA H200)",
    )  # fmt: skip
    assert line == (
        "trained texture texture-background-0.5/unet/pfull/seed1: best validation Dice 0.812 "
        "at epoch 17/20, 45 s on cuda:1 (NVIDIA H200)"
    )
    per_image = pd.DataFrame({
        "condition": ["clean", "clean", "clean", "speckle-s1", "speckle-s1"],
        "split": ["test", "test", "calibration", "test", "test"],
        "dice": [0.9, 0.7, 0.5, 0.4, 0.6],
    })  # fmt: skip
    line = jobs.evaluate_summary(
        "perturbation texture_demo/unet/pfull/seed1", per_image, 3.2, "cpu"
    )
    assert line == (
        "evaluated perturbation texture_demo/unet/pfull/seed1: 5 images in 3 test sets, mean "
        "Dice calibration 0.500, test 0.650, 3 s on cpu"
    )
    jobs.console(line)
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
    message = jobs.workflow_summary([str(log)], results, report)
    assert "no report yet" in message
    assert "2 trained model(s)" in message and "2 of them trained in this run" in message
    report.parent.mkdir()
    report.write_text("<html>")
    message = jobs.workflow_summary([str(log)], results, report)
    assert f"the report is {report.resolve()} (open it in a browser)" in message
    assert "0 of them" in jobs.workflow_summary(None, results, report)

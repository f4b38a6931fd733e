"""Run a job script in a process forked from one that has torch, MONAI and segrobust imported.

Every Snakemake job is a new Python process, and a training or evaluation job spends about
2.5 s of it importing torch, MONAI (whose package imports all of its subpackages, SciPy's signal
and matplotlib among them) and pandas: on the default study that is a third of the summed job
time (``benchmarks/job_overhead.py``). Lazy imports cannot help, the job needs those packages.
What helps is paying for the imports once: the first such job on a machine starts a *preload
server* that imports them and then forks one child per job. The job process itself stays a thin
client: it hands its stdout, stderr, working directory, environment and script to the server,
waits for the child's exit status and exits with it. The child runs the script as ``__main__``
exactly as the job process would have. This is the ``forkserver`` idea of
:mod:`multiprocessing`, which cannot be used as is: its server belongs to one parent process,
while here independent processes started by Snakemake share one.

Correctness guards:

- The server is keyed by everything that decides what an import yields: the interpreter,
  ``sys.path``, the preloaded names and their packages' installed versions, thread-count
  environment variables read at import time, and the modification time and size of every
  ``segrobust`` source file. An edit to the library therefore gets a new server; the old one
  exits after ``IDLE_SECONDS`` without work.
- The server never initialises CUDA (forking a process that has is unsafe): it starts with
  ``CUDA_VISIBLE_DEVICES`` empty and ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, checks after the
  imports that torch has not initialised CUDA, and each child restores the job's own
  environment before it runs anything, so CUDA first starts in the child, on the job's devices.
  On a machine with GPUs the server first forks a probe child that runs a CUDA operation; if
  that fails, the server does not start and jobs import torch themselves.
- Each child runs in its own process group. The client forwards ``SIGTERM``, ``SIGINT`` and
  ``SIGHUP`` to it, and the child kills its group when the client's end of a pipe closes, so a
  job killed outright (``SIGKILL``) does not leave its child running.
- The socket lives in a directory only the user can enter and the server serves only the user's
  processes (``SO_PEERCRED``).
- When no server can be used (start failed, directory not private) the job raises
  :class:`PreloadUnavailable` before anything ran, and the caller runs the job in its own
  process as before; a job never runs twice.

What changes for the job: Snakemake's benchmark file still has the job's true wall time, but its
CPU and memory columns measure only the thin client; the job's own log records the child's CPU
time and peak memory instead (``segrobust.jobs``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import importlib
import importlib.metadata
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path

from segrobust.gpus import machine_gpus, private_dir

#: Seconds a server without running children waits for the next job before it exits.
IDLE_SECONDS = 60.0
#: Seconds a client waits for a server it started to finish its imports.
START_SECONDS = 300.0
#: Environment variables read when the preloaded libraries are loaded (thread pools: OpenMP
#: reads its settings once, when the library loads, so a child keeps the server's).
KEY_ENVIRONMENT = ("VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "PYTHONHASHSEED")
KEY_ENVIRONMENT_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO_")
_PROTOCOL = 1
_LENGTH = struct.Struct("!Q")
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

#: In a child forked by the server: the start time (epoch seconds) of the job process it serves.
_child_started: float | None = None


class PreloadUnavailable(RuntimeError):
    """No preload server could take the job; nothing of the job ran."""


def child_started() -> float | None:
    """When running in a preloaded child: the start time of the job process it serves (the
    job's real start, before its imports); else None."""
    return _child_started


def supported() -> bool:
    """Whether this platform can run preloaded children (Linux: fork and fd passing)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def watched_files() -> list[Path]:
    """The source files whose edit must not be served by an old server: the segrobust
    package's ``.py`` files."""
    import segrobust

    return sorted(Path(segrobust.__file__).resolve().parent.rglob("*.py"))


def search_path() -> list[str]:
    """``sys.path`` with every entry absolute (``""`` is the working directory): the server
    runs elsewhere and must import from the same places."""
    return [os.path.abspath(entry or os.getcwd()) for entry in sys.path]


def _distribution_versions(preload: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each preloaded top-level package (a ``pip install`` of another
    version must not be served by a server that imported the old one)."""
    versions = {}
    for name in sorted({module.split(".")[0] for module in preload}):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def server_key(preload: Sequence[str], watched: Iterable[Path] | None = None) -> str:
    """A digest of everything that decides what the preloaded imports yield (see the module
    docstring)."""
    digest = hashlib.sha256()
    environment = sorted(
        (name, value)
        for name, value in os.environ.items()
        if name in KEY_ENVIRONMENT or name.startswith(KEY_ENVIRONMENT_PREFIXES)
    )
    fixed = (
        _PROTOCOL, sys.executable, sys.version, search_path(), sorted(preload), environment,
        _distribution_versions(preload),
    )  # fmt: skip
    digest.update(repr(fixed).encode())
    for path in watched_files() if watched is None else watched:
        info = path.stat()
        digest.update(f"{path}:{info.st_mtime_ns}:{info.st_size}".encode())
    return digest.hexdigest()[:24]


# --- client side ---


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


#: Where the server keeps the starting job's ``CUDA_VISIBLE_DEVICES`` for its CUDA probe.
_PROBE_DEVICES = "SEGROBUST_PRELOAD_PROBE_DEVICES"


def _server_environment() -> dict[str, str]:
    """The client's environment with CUDA hidden from the server (see the module docstring)."""
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    environment.pop(_PROBE_DEVICES, None)
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        environment[_PROBE_DEVICES] = os.environ["CUDA_VISIBLE_DEVICES"]
    return environment


_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from segrobust.preload import serve; "
    "serve(sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]))"
)


def _start_server(path: Path, preload: Sequence[str], idle_seconds: float) -> socket.socket:
    """Start a server for ``path`` and connect to it once its imports are done."""
    log_path = path.with_suffix(".log")
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(search_path()), str(path), json.dumps(preload),
             str(idle_seconds)],
            env=_server_environment(), cwd="/", stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while True:
        sock = _connect(path)
        if sock is not None:
            return sock
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise PreloadUnavailable(
                f"the preload server exited with status {server.returncode} while starting "
                f"(log {log_path}):\n{tail}"
            )
        if time.monotonic() > deadline:
            server.kill()
            raise PreloadUnavailable(f"the preload server did not start in {START_SECONDS:g} s")
        time.sleep(0.05)


def _server_socket(directory: Path, preload: Sequence[str], idle_seconds: float) -> socket.socket:
    """A connection to the running server for this key, starting one if there is none (one
    starter at a time: the others wait on a lock file and then connect)."""
    path = directory / f"{server_key(preload)}.sock"
    sock = _connect(path)
    if sock is not None:
        return sock
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        sock = _connect(path)
        if sock is not None:
            return sock
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket file left by a server that died
        return _start_server(path, preload, idle_seconds)


def _send_message(sock: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _read_line(stream) -> str:
    line = stream.readline()
    if not line:
        raise EOFError
    return line.decode().strip()


def _exit_status(word: str, value: str) -> int:
    """A child's status as a process exit status: its exit code, or 128 + signal number."""
    return int(value) if word == "exit" else 128 + int(value)


def run_in_server(
    script: str | os.PathLike,
    *,
    preload: Sequence[str],
    started: float,
    directory: str | os.PathLike | None = None,
    idle_seconds: float = IDLE_SECONDS,
) -> int:
    """Run ``script`` as ``__main__`` in a preloaded child with this process's stdout, stderr,
    working directory, environment and ``sys.argv``; return the child's exit status
    (128 + N when it was killed by signal N).

    Args:
        script: the Python file to run (for a Snakemake job: the job's script with its
            preamble, ``sys.argv[0]``).
        preload: modules the server imports before serving.
        started: this process's start time, handed to the child (:func:`child_started`).
        directory: where sockets live; default ``segrobust.gpus.private_dir("preload")``.
        idle_seconds: lifetime without work of a server started by this call.

    Raises:
        PreloadUnavailable: no server took the job; nothing ran.
    """
    if not supported():
        raise PreloadUnavailable(f"preloaded jobs need Linux; this is {sys.platform}")
    try:
        directory = Path(directory) if directory is not None else private_dir("preload")
        sock = _server_socket(directory, preload, idle_seconds)
    except OSError as exc:
        raise PreloadUnavailable(f"no preload server: {exc}") from exc
    alive_read, alive_write = os.pipe()
    try:
        socket.send_fds(sock, [b"R"], [1, 2, alive_read])
        _send_message(
            sock,
            {
                "script": str(Path(script).resolve()), "cwd": os.getcwd(),
                "env": dict(os.environ), "argv": sys.argv, "started": started,
            },
        )  # fmt: skip
        stream = sock.makefile("rb")
        word, value = _read_line(stream).split()
    except (OSError, EOFError, ValueError) as exc:
        os.close(alive_write)
        raise PreloadUnavailable(f"the preload server did not take the job: {exc}") from exc
    finally:
        os.close(alive_read)
    if word != "pid":
        os.close(alive_write)
        raise PreloadUnavailable(f"the preload server answered {word} {value}")
    child = int(value)
    return _wait_for_child(child, stream, alive_write)


def _wait_for_child(child: int, stream, alive_write: int) -> int:
    """Forward signals to the child's process group until the server reports its status."""

    def forward(signum, frame):
        try:
            os.killpg(child, signum)
        except ProcessLookupError:  # not yet its own group leader, or gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    try:
        while True:
            try:
                word, value = _read_line(stream).split()
                return _exit_status(word, value)
            except InterruptedError:
                continue
            except (OSError, EOFError):
                # the server went away: wait for the child itself, its status is lost
                while _exists(child):
                    time.sleep(0.1)
                sys.stderr.write(f"segrobust: the preload server died while job {child} ran\n")
                return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(alive_write)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- server side ---


def serve(socket_path: str, preload: Sequence[str], idle_seconds: float) -> None:
    """Import ``preload``, then fork a child for every request on ``socket_path`` until no
    child has run for ``idle_seconds`` (or ``SIGTERM``: then after the running children)."""
    for name in preload:
        importlib.import_module(name)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised while preloading; children could not use it")
    if torch is not None and torch.version.cuda is not None and machine_gpus():
        _probe_cuda_in_a_child()
    gc.collect()
    gc.freeze()  # children then share the preloaded objects' pages instead of copying them
    path = Path(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    listener.bind(str(staging))
    listener.listen(64)
    os.rename(staging, path)  # appears only once it accepts
    _Server(listener, path, idle_seconds).run()


def _probe_cuda_in_a_child() -> None:
    """On a machine with GPUs: check that a forked child can run CUDA (restoring the starting
    job's devices, as children do), so that a CUDA stack which cannot survive the fork makes the
    server refuse to start (jobs then import torch themselves) instead of failing every job.

    Raises:
        RuntimeError: the probe child could not run a CUDA operation.
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
            visible = os.environ.pop(_PROBE_DEVICES, None)
            if visible is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = visible
            import torch

            torch.ones(1, device="cuda").add_(1)
            torch.cuda.synchronize()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            "a process forked from the preload server cannot use CUDA (traceback above); jobs "
            "will import torch themselves"
        )


class _Server:
    """The accept / fork / reap loop of :func:`serve`."""

    def __init__(self, listener: socket.socket, path: Path, idle_seconds: float) -> None:
        self.listener, self.path, self.idle_seconds = listener, path, idle_seconds
        self.inode = path.stat().st_ino
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.wake_read, wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")

    def _stop(self, signum, frame) -> None:
        if not self.stopping:
            self.stopping = True
            self.selector.unregister(self.listener)  # no new jobs; the running ones finish

    def _still_ours(self) -> bool:
        """False once the socket file was removed or replaced: nobody can reach us."""
        try:
            return self.path.stat().st_ino == self.inode
        except OSError:
            return False

    def run(self) -> None:
        last_work = time.monotonic()
        try:
            while True:
                if self.children:
                    last_work = time.monotonic()
                elif self.stopping or not self._still_ours():
                    return
                elif time.monotonic() - last_work >= self.idle_seconds:
                    return
                timeout = None if self.children else self.idle_seconds
                for key, _ in self.selector.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_read, 512)
                self._reap()
        finally:
            if self._still_ours():
                self._remove_files()
            self.listener.close()

    def _remove_files(self) -> None:
        """The socket, the start lock and an empty log: a library edit makes a new key, and
        the old key's files would pile up. (A client that still opens the removed lock file
        can start a second server; its socket replaces this one, which is harmless.)"""
        log = self.path.with_suffix(".log")
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()
        for path in (self.path, self.path.with_suffix(".lock")):
            with contextlib.suppress(OSError):
                path.unlink()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(30)
            _, uid, _ = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))  # fmt: skip
            if uid != os.getuid():
                raise PermissionError(f"request from uid {uid}")
            _, fds, _, _ = socket.recv_fds(conn, 1, 3)
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
            request = self._read_request(conn)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"refused a request: {exc}\n")
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self._child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:
            conn.close()  # the child's own pipe check ends it: its client is gone
            conn = None
        self.children[pid] = conn

    @staticmethod
    def _read_request(conn: socket.socket) -> dict:
        head = conn.recv(_LENGTH.size, socket.MSG_WAITALL)
        (length,) = _LENGTH.unpack(head)
        data = b""
        while len(data) < length:
            chunk = conn.recv(length - len(data))
            if not chunk:
                raise ValueError("request cut short")
            data += chunk
        return json.loads(data)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            message = f"exit {code}\n" if code >= 0 else f"signal {-code}\n"
            with contextlib.suppress(OSError):
                conn.sendall(message.encode())
            conn.close()

    def _child(self, request: dict, fds: list[int]) -> None:
        """Become the job: its stdio, directory, environment, argv; run the script; exit."""
        code = 1
        try:
            code = _run_child(request, fds, self._close_in_child)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _close_in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.listener.close()
        os.close(self.wake_read)
        for conn in self.children.values():
            if conn is not None:
                conn.close()


def _run_child(request: dict, fds: list[int], close_server) -> int:
    """The child's life after the fork; returns its exit status."""
    global _child_started
    close_server()
    os.setpgid(0, 0)
    stdout, stderr, alive = fds
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.close(stdout)
    os.close(stderr)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    threading.Thread(target=_die_with_client, args=(alive,), daemon=True).start()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    _child_started = float(request["started"])
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as exc:
        return _system_exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _system_exit_code(code) -> int:
    """What ``sys.exit(code)`` makes the process exit with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _die_with_client(alive: int) -> None:
    """Block until the client's end of the pipe closes, then kill this process group: the job
    process is gone (killed, even with SIGKILL), so nobody waits for this child."""
    while os.read(alive, 1):
        pass
    os.killpg(0, signal.SIGKILL)

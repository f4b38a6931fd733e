"""Small fake archives in each real source's layout, and a local HTTP server to serve them.

The archives mimic the real ones' structure (folder names, file naming, dataset.json, the MSD
tarballs' macOS ``._*`` files, BUSI's several masks per image, GlaS's instance maps and
Grade.csv) with tiny images, so the preparation code is exercised on the real layout offline.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import json
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np


def _nifti_bytes(array: np.ndarray, spacing) -> bytes:
    img = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    img.header.set_zooms(spacing)
    return gzip.compress(img.to_bytes(), mtime=0)


def msd_volumes(n_cases: int, shape=(32, 32, 8), modality="CT", label_values=(1,), seed=0):
    """Synthetic (image, label) pairs: a bright ellipsoid per label value on a noisy background.

    Each label value gets its own blob, touching slices 2..5 so some slices have no foreground.
    """
    rng = np.random.default_rng(seed)
    out = []
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for i in range(n_cases):
        if modality == "CT":
            image = rng.normal(-100, 40, shape)  # soft tissue-ish Hounsfield units
        else:
            image = rng.normal(200, 30, shape)  # arbitrary MRI scale
        label = np.zeros(shape, dtype=np.uint8)
        for j, value in enumerate(label_values):
            cx, cy = 10 + 12 * j, 12 + i % 5
            blob = ((x - cx) / 5) ** 2 + ((y - cy) / 6) ** 2 + ((z - 3.5) / 2) ** 2 <= 1
            label[blob] = value
            image[blob] += 150 + 20 * j
        out.append((image.astype(np.float32), label))
    return out


def write_msd_dir(
    root: Path,
    task: str = "Task09_Spleen",
    n_cases: int = 4,
    modality: str = "CT",
    labels: dict | None = None,
    spacing=(0.8, 0.8, 5.0),
    shape=(32, 32, 8),
) -> Path:
    """An MSD-layout directory ``root/task`` with imagesTr/, labelsTr/ and dataset.json."""
    labels = labels or {"0": "background", "1": "spleen"}
    values = [int(k) for k in labels if int(k) != 0]
    task_dir = root / task
    (task_dir / "imagesTr").mkdir(parents=True)
    (task_dir / "labelsTr").mkdir()
    training = []
    stem = task.split("_", 1)[1].lower()
    for i, (image, label) in enumerate(msd_volumes(n_cases, shape, modality, values), start=1):
        name = f"{stem}_{i}.nii.gz"
        (task_dir / "imagesTr" / name).write_bytes(_nifti_bytes(image, spacing))
        (task_dir / "labelsTr" / name).write_bytes(_nifti_bytes(label, spacing))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    # The real MSD tarballs carry macOS resource forks beside the images; they are not NIfTI.
    (task_dir / "imagesTr" / f"._{stem}_1.nii.gz").write_bytes(b"\x00\x05\x16\x07 not nifti")
    meta = {
        "name": task,
        "modality": {"0": modality},
        "labels": labels,
        "numTraining": n_cases,
        "training": training,
        "test": [],
    }
    (task_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    return task_dir


def make_msd_tar(path: Path, tmp: Path, **kwargs) -> Path:
    """An MSD task tarball (uncompressed, like Task09_Spleen.tar)."""
    task_dir = write_msd_dir(tmp, **kwargs)
    with tarfile.open(path, "w") as tf:
        tf.add(task_dir, arcname=task_dir.name)
    return path


def _png(array: np.ndarray) -> bytes:
    return iio.imwrite("<bytes>", array, extension=".png")


def _bmp(array: np.ndarray) -> bytes:
    return iio.imwrite("<bytes>", array, extension=".bmp")


def _disk(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def make_busi_zip(path: Path, shape=(40, 48), seed=0) -> Path:
    """Dataset_BUSI_with_GT/{benign,malignant,normal}/<cls> (<n>).png with <stem>_mask.png and,
    for some images, <stem>_mask_1.png (a second lesion)."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for cls, n in (("benign", 3), ("malignant", 2), ("normal", 2)):
            for i in range(1, n + 1):
                stem = f"Dataset_BUSI_with_GT/{cls}/{cls} ({i})"
                gray = rng.integers(0, 120, shape, dtype=np.uint8)
                masks = [] if cls == "normal" else [_disk(shape, (15, 14 + i), 6)]
                if cls == "benign" and i == 2:
                    masks.append(_disk(shape, (28, 36), 4))  # second mask file
                for m in masks:
                    gray[m] = 200
                zf.writestr(f"{stem}.png", _png(np.stack([gray] * 3, axis=-1)))
                first = masks[0] if masks else np.zeros(shape, bool)
                zf.writestr(f"{stem}_mask.png", _png(first.astype(np.uint8) * 255))
                for k, m in enumerate(masks[1:], start=1):
                    zf.writestr(f"{stem}_mask_{k}.png", _png(m.astype(np.uint8) * 255))
    return path


GLAS_DIR = "Warwick QU Dataset (Released 2016_07_08)"


def make_glas_zip(path: Path, shape=(36, 44), seed=0) -> Path:
    """Warwick QU Dataset (Released 2016_07_08)/{train,testA,testB}_<n>.bmp with
    <name>_anno.bmp instance maps (0 background, 1..k glands) and Grade.csv."""
    rng = np.random.default_rng(seed)
    rows = ["name,Patient ID,grade (GlaS),grade (Sirinukunwattana et al. 2015)"]
    with zipfile.ZipFile(path, "w") as zf:
        names = [f"train_{i}" for i in range(1, 5)] + ["testA_1", "testA_2", "testB_1", "testB_2"]
        for j, name in enumerate(names):
            anno = np.zeros(shape, dtype=np.uint8)
            anno[_disk(shape, (10, 12), 6)] = 1
            anno[_disk(shape, (24, 30 + j % 3), 5)] = 2
            rgb = rng.integers(150, 230, (*shape, 3), dtype=np.uint8)
            rgb[anno > 0] = (120, 40, 160)
            zf.writestr(f"{GLAS_DIR}/{name}.bmp", _bmp(rgb))
            zf.writestr(f"{GLAS_DIR}/{name}_anno.bmp", _bmp(anno))
            rows.append(f"{name},{j // 2 + 1}, benign,adenomatous")
        zf.writestr(f"{GLAS_DIR}/Grade.csv", "\n".join(rows) + "\n")
    return path


def make_malicious_tar(path: Path, kind: str) -> Path:
    """A tar whose first member is harmless and whose second is unsafe (``kind``)."""
    with tarfile.open(path, "w") as tf:
        good = tarfile.TarInfo("data/ok.txt")
        good.size = 2
        tf.addfile(good, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(
            {"dotdot": "data/../../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "data/bad")
        )
        if kind in ("dotdot", "absolute"):
            bad.size = 4
            tf.addfile(bad, io.BytesIO(b"evil"))
            return path
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "../outside.txt"
        elif kind == "device":
            bad.type, bad.devmajor, bad.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            bad.type = tarfile.FIFOTYPE
        else:
            raise ValueError(kind)
        tf.addfile(bad)
    return path


def make_malicious_zip(path: Path, kind: str) -> Path:
    """A zip with a harmless member and an unsafe one (``dotdot``, ``absolute``, ``symlink``)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/ok.txt", "ok")
        if kind == "symlink":
            info = zipfile.ZipInfo("data/link")
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "../../etc/passwd")
        else:
            name = {"dotdot": "data/../../evil.txt", "absolute": "/tmp/evil.txt"}[kind]
            zf.writestr(zipfile.ZipInfo(name), "evil")
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``directory``; ``mode`` decides Range support and truncation."""

    directory: Path
    mode: str
    requests: list

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.directory / self.path.lstrip("/")
        range_header = self.headers.get("Range")
        self.requests.append({"path": self.path, "range": range_header})
        if not path.is_file():
            self.send_error(404)
            return
        if self.mode == "fail_once" and len(self.requests) == 1:
            self.send_error(503, "Service Unavailable")
            return
        if self.mode == "endless":
            self._send_endless()
            return
        data = path.read_bytes()
        start = 0
        m = re.match(r"bytes=(\d+)-$", range_header or "")
        if m and self.mode in ("range", "truncate_once"):
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if self.mode != "truncate_unannounced":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        truncate = self.mode in ("truncate", "truncate_unannounced") or (
            self.mode == "truncate_once" and len(self.requests) == 1
        )
        self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.close_connection = True

    def _send_endless(self, limit: int = 300 * 2**20):
        """A body without Content-Length that does not end (up to ``limit`` bytes) until the
        client hangs up; the request's ``sent`` records how many bytes went out."""
        self.send_response(200)
        self.end_headers()
        block, record = b"\0" * 2**16, self.requests[-1]
        record["sent"] = 0
        try:
            while record["sent"] < limit:
                self.wfile.write(block)
                record["sent"] += len(block)
        except OSError:  # the client closed the connection
            pass
        self.close_connection = True


@contextlib.contextmanager
def serve(directory: Path, mode: str = "range"):
    """Serve ``directory`` on 127.0.0.1 at a random port in a thread.

    ``mode``: ``range`` (honours Range), ``plain`` (ignores Range, always 200), ``truncate``
    (announces the full length, sends half), ``truncate_once`` (first response truncated, then
    Range honoured), ``truncate_unannounced`` (no Content-Length, sends half), ``fail_once``
    (HTTP 503 first, then like ``plain``), ``endless`` (zeros without end or Content-Length,
    up to 300 MiB, until the client hangs up). Yields ``(base_url, requests)`` where ``requests``
    logs each GET.
    """
    requests: list = []
    handler = type(
        "Handler", (_Handler,), {"directory": Path(directory), "mode": mode, "requests": requests}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL on a port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- hostile archives (tests/adversarial) -----------------------------------------------------

#: Directory names long enough that a chain of 16 of them passes PATH_MAX (4096 bytes).
_LONG_DIR = "d" * 247
_CHAIN_STEPS = "abcdefghijklmnop"


def _tar_entry(name: str, kind: str = "file", data: bytes = b"", link: str = "") -> tuple:
    return name, kind, data, link


def write_tar(path: Path, entries, mode: str = "w") -> Path:
    """A tar of ``(name, kind[, data[, link]])`` entries; kind is file, dir, symlink, hardlink,
    fifo, chr or blk. PAX format, so names and link targets of any length fit."""
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
    }
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            name, kind, data, link = (*entry, *("", "file", b"", "")[len(entry) :])
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.linkname = link
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def symlink_chain_entries(levels_up: int, target: str, payload: bytes) -> list[tuple]:
    """The CVE-2025-4517 technique: members that write ``target`` ``levels_up`` directories
    above the extraction directory, past tarfile's ``data`` filter on unpatched Pythons.

    Sixteen short symlinks ``a``, ``b``, ... each point at a 247-byte directory name, so the
    chain ``a/b/.../p`` resolves to a path longer than PATH_MAX. ``os.path.realpath`` (which the
    filter trusts) cannot ``lstat`` past that length and takes the rest of the path as plain
    text, while the kernel, following one short link at a time, resolves it fine. A link at the
    bottom of the chain points back up to the extraction root; ``escape`` goes through it and
    then ``levels_up`` times ``..``: the filter sees a path inside the target, the kernel one
    outside it. The last member writes ``escape/<target>``.
    """
    entries, prefix = [], ""
    for step in _CHAIN_STEPS:
        entries.append(_tar_entry(prefix + _LONG_DIR, "dir"))
        entries.append(_tar_entry(prefix + step, "symlink", link=_LONG_DIR))
        prefix += _LONG_DIR + "/"
    pivot = "/".join(_CHAIN_STEPS) + "/" + "l" * 254
    entries.append(_tar_entry(pivot, "symlink", link="../" * len(_CHAIN_STEPS)))
    entries.append(_tar_entry("escape", "symlink", link=pivot + "/.." * levels_up))
    entries.append(_tar_entry(f"escape/{target}", "file", payload))
    return entries


def mark_zip_encrypted(path: Path) -> Path:
    """Set the 'encrypted' flag of every entry (local and central headers) of a zip in place;
    zipfile cannot write encrypted entries itself."""
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + flag_offset] |= 0x01
            start = at + 4
    path.write_bytes(bytes(data))
    return path


def write_msd_cases(root: Path, cases: dict, spacing=(1.0, 1.0, 1.0), modality="MRI") -> Path:
    """An MSD-layout directory from ``{file name: (image, label)}`` arrays (any shapes and
    values, NaN or 4D included: the point is to feed preparation what a user might)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([*spacing, 1.0])
    training = []
    for name, (image, label) in cases.items():
        nib.save(nib.Nifti1Image(np.asarray(image, np.float32), affine), root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(np.asarray(label, np.uint8), affine), root / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"modality": {"0": modality}, "labels": {"0": "background", "1": "organ"}}
    (root / "dataset.json").write_text(json.dumps({**meta, "training": training}))
    return root


def blob_volume(shape=(24, 24, 8), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """An image / label pair: a bright ellipsoid on noise, foreground on slices 2..5."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    label = (((x - 12) / 5) ** 2 + ((y - 12) / 6) ** 2 + ((z - 3.5) / 2) ** 2 <= 1).astype(np.uint8)
    image = rng.normal(100, 20, shape) + 100 * label
    return image.astype(np.float32), label

"""Training data: image folders, InsightFace MXNet RecordIO (read without mxnet), synthetic faces.

Pixel convention (one for all of training/): a dataset item is ``(image, label)`` with ``image``
a float32 ``(3, S, S)`` **RGB tensor in [0, 1]** and ``label`` an int. Degradations
(``training.degradations``; the Lu & Ebrahimi JPEG/noise model needs [0, 1]) run on that range
on the training device; only then does ``normalize`` map it to the model input
``(255 x - 127.5) / 128`` (arcface_torch's and the reference model's convention, stored in
every checkpoint (``training.checkpoint.checkpoint_normalization``) so export and the SDK manifest never guess it).

Formats:

* ``ImageFolderDataset(root)``: ``root/<identity>/*.jpg|png`` (112x112 aligned crops, as
  ``shared/data/train/celeba``); identities are the sorted sub-folder names, label = index.
* ``RecordIODataset(path)``: InsightFace ``train.rec`` + ``train.idx`` (MXNet indexed RecordIO),
  parsed directly: each record is ``uint32 magic 0xced7230a``, ``uint32 lrecord`` (top 3 bits
  ``cflag``, low 29 bits the length), the payload padded to 4 bytes; a payload that contained the
  magic word was split into parts (cflag 1 = first, 2 = middle, 3 = last) and the reader puts the
  magic back between them, as dmlc-core's ``RecordIOReader::NextRecord`` does. The payload is
  ``IRHeader = struct 'IfQQ' (flag, label, id, id2)``, then ``flag`` float32 labels when
  ``flag > 0``, then the JPEG. Record 0 of an InsightFace set is a header whose label holds
  ``(num_images + 1, ...)``: the images are records ``1 .. label[0] - 1`` (arcface_torch's
  ``MXFaceDataset``); without such a header every key in the index is an image.
  ``write_recordio`` writes the same format (used by the tests and to pack folders).
* ``make_synthetic_identities``: a deterministic toy "face" set for tests only.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

#: The model input convention, stored in checkpoints (see module docstring); keys and spelling as in
#: the SDK bundle manifest's ``input`` (``crres_sdk.bundle``: color "rgb"|"bgr", mean, std on 0..255).
NORMALIZATION = {"color": "rgb", "mean": [127.5, 127.5, 127.5], "std": [128.0, 128.0, 128.0],
                 "input_range": "0-255", "layout": "NCHW"}


#: Folder-name prefixes of the training sets (training/experiments/make_data.sh, split_identities.py).
SOURCE_PREFIXES = {"celeba_": "celeba", "glint_": "glint360k"}


def source_identity(class_name: str) -> str:
    """The person a training class is, as named by its source data set (``glint_Tom_Hanks`` -> ``Tom_Hanks``).

    Overlap checks against LFW compare these, never the prefixed folder names (which never match)."""
    for prefix in SOURCE_PREFIXES:
        if class_name.startswith(prefix):
            return class_name[len(prefix):]
    return class_name


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB batch -> model input ``(255 x - 127.5) / 128``."""
    return (x01 * 255.0 - 127.5) / 128.0


def _to_tensor(bgr: np.ndarray, size: int, where: str) -> torch.Tensor:
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
        raise ValueError(f"cannot decode a 3-channel image from {where}")
    if bgr.shape[:2] != (size, size):
        # Aligned crops should already be size x size; other sizes are resampled (area for
        # shrinking, cubic for enlarging) so a 128 px set can feed a 112 px model and vice versa.
        interp = cv2.INTER_AREA if bgr.shape[0] > size else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (size, size), interpolation=interp)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


class ImageFolderDataset(Dataset):
    """``root/<identity>/<image>``; labels are indices into the sorted identity names."""

    def __init__(self, root: str | os.PathLike, size: int = 112) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")
        self.size = size
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.samples: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(f for f in (self.root / name).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            self.samples.extend((str(f), label) for f in files)
        if not self.samples:
            raise ValueError(f"no images found under {self.root}/<identity>/ ({', '.join(IMAGE_EXTENSIONS)})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return _to_tensor(cv2.imread(path, cv2.IMREAD_COLOR), self.size, path), label


# --- MXNet RecordIO ---------------------------------------------------------------------------------

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
IR_FORMAT = "<IfQQ"  # flag, label, id, id2 (mx.recordio._IR_FORMAT 'IfQQ', native = little-endian)
IR_SIZE = struct.calcsize(IR_FORMAT)


def pack_record(label: float | Sequence[float], payload: bytes, id_: int = 0, id2: int = 0) -> bytes:
    """``mx.recordio.pack``: IRHeader (+ float32 label array when the label is a sequence) + payload."""
    if isinstance(label, (int, float, np.floating, np.integer)):
        return struct.pack(IR_FORMAT, 0, float(label), id_, id2) + payload
    arr = np.asarray(label, dtype="<f4")
    return struct.pack(IR_FORMAT, arr.size, 0.0, id_, id2) + arr.tobytes() + payload


def unpack_record(rec: bytes) -> tuple[int, float | np.ndarray, int, int, bytes]:
    """``mx.recordio.unpack``: ``(flag, label, id, id2, payload)``; label is an array when flag > 0."""
    if len(rec) < IR_SIZE:
        raise ValueError(f"record of {len(rec)} bytes is shorter than its {IR_SIZE}-byte header")
    flag, label, id_, id2 = struct.unpack(IR_FORMAT, rec[:IR_SIZE])
    rest = rec[IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise ValueError("record truncated inside its label array")
        label = np.frombuffer(rest[: 4 * flag], dtype="<f4").copy()
        rest = rest[4 * flag:]
    return flag, label, id_, id2, rest


def _encode_lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<I", (cflag << 29) | length)


def write_record(f, data: bytes) -> None:
    """dmlc-core ``RecordIOWriter::WriteRecord``: split at 4-aligned magic words, pad to 4 bytes."""
    n = len(data)
    if n >= 1 << 29:
        raise ValueError("a RecordIO record must be shorter than 2**29 bytes")
    dptr = 0
    for i in range(0, (n >> 2) << 2, 4):
        if data[i:i + 4] == _MAGIC_BYTES:
            f.write(_MAGIC_BYTES + _encode_lrec(1 if dptr == 0 else 2, i - dptr) + data[dptr:i])
            dptr = i + 4
    f.write(_MAGIC_BYTES + _encode_lrec(3 if dptr else 0, n - dptr) + data[dptr:])
    f.write(b"\0" * ((-n) % 4))


def read_record(f) -> bytes | None:
    """dmlc-core ``RecordIOReader::NextRecord`` from the current position; None at end of file."""
    out = bytearray()
    while True:
        head = f.read(8)
        if not head:
            if out:
                raise ValueError("RecordIO file ends inside a multi-part record")
            return None
        if len(head) != 8:
            raise ValueError("truncated RecordIO record header")
        magic, lrec = struct.unpack("<II", head)
        if magic != RECORDIO_MAGIC:
            raise ValueError(f"bad RecordIO magic 0x{magic:08x} (expected 0x{RECORDIO_MAGIC:08x})")
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        padded = (length + 3) & ~3
        chunk = f.read(padded)
        if len(chunk) != padded:
            raise ValueError("truncated RecordIO record payload")
        out += chunk[:length]
        if cflag in (0, 3):
            return bytes(out)
        out += _MAGIC_BYTES


def write_recordio(prefix: str | os.PathLike, samples: Iterable[tuple[bytes, int]]) -> tuple[str, str]:
    """Write ``prefix.rec`` / ``prefix.idx`` in InsightFace's layout from ``(jpeg_bytes, label)``.

    Record 0 is the header (label ``[num_images + 1, num_images + 1 + num_ids]``), records
    ``1..num_images`` the images, then one record per identity with label ``[first, end)`` of its
    image keys (InsightFace's face2rec layout; it assumes samples grouped by label, as produced
    from an identity-folder walk). Returns the two paths.
    """
    samples = list(samples)
    rec_path, idx_path = f"{prefix}.rec", f"{prefix}.idx"
    n = len(samples)
    ranges: dict[int, list[int]] = {}
    for key, (_, label) in enumerate(samples, start=1):
        r = ranges.setdefault(int(label), [key, key + 1])
        r[1] = key + 1
    with open(rec_path, "wb") as rec, open(idx_path, "w") as idx:
        def put(key: int, data: bytes) -> None:
            idx.write(f"{key}\t{rec.tell()}\n")
            write_record(rec, data)

        put(0, pack_record([n + 1, n + 1 + len(ranges)], b""))
        for key, (jpeg, label) in enumerate(samples, start=1):
            put(key, pack_record(float(label), jpeg, id_=key))
        for j, label in enumerate(sorted(ranges)):
            put(n + 1 + j, pack_record(ranges[label], b""))
    return rec_path, idx_path


class RecordIODataset(Dataset):
    """InsightFace ``train.rec``/``train.idx`` (a folder holding them, or the ``.rec`` path)."""

    def __init__(self, path: str | os.PathLike, size: int = 112) -> None:
        p = Path(path)
        self.rec_path = p / "train.rec" if p.is_dir() else p
        self.idx_path = self.rec_path.with_suffix(".idx")
        for q in (self.rec_path, self.idx_path):
            if not q.is_file():
                raise FileNotFoundError(f"RecordIO file {q} does not exist")
        self.size = size
        self.offsets: dict[int, int] = {}
        with open(self.idx_path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    key, off = line.split("\t")
                    self.offsets[int(key)] = int(off)
                except ValueError:
                    raise ValueError(f"{self.idx_path}:{line_no}: expected 'key<TAB>offset'") from None
        self._fh = None
        self._pid = None
        flag, label, *_ = unpack_record(self._read(0)) if 0 in self.offsets else (0, 0.0)
        if flag > 0:  # InsightFace header record: images are keys 1 .. label[0] - 1
            self.keys = list(range(1, int(label[0])))
            self._num_classes = int(label[1] - label[0]) if flag >= 2 else None
        else:
            self.keys = sorted(self.offsets)
            self._num_classes = None
        missing = [k for k in self.keys[:1] + self.keys[-1:] if k not in self.offsets]
        if missing:
            raise ValueError(f"index {self.idx_path} lacks keys {missing} named by the header record")
        if self._num_classes is None:  # no identity ranges: scan the labels once (headers only)
            self._num_classes = int(max(self.label(k) for k in self.keys)) + 1

    def _read(self, key: int) -> bytes:
        if self._fh is None or self._pid != os.getpid():  # one handle per DataLoader worker
            self._fh, self._pid = open(self.rec_path, "rb"), os.getpid()
        self._fh.seek(self.offsets[key])
        rec = read_record(self._fh)
        if rec is None:
            raise ValueError(f"no record at key {key} in {self.rec_path}")
        return rec

    def label(self, key: int) -> int:
        _, label, *_ = unpack_record(self._read(key))
        return int(label if np.isscalar(label) else label[0])

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        key = self.keys[i]
        _, label, _, _, payload = unpack_record(self._read(key))
        label = int(label if np.isscalar(label) else label[0])
        img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        return _to_tensor(img, self.size, f"{self.rec_path} key {key}"), label

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fh"], state["_pid"] = None, None
        return state


def build_dataset(path: str | os.PathLike, size: int = 112) -> Dataset:
    """RecordIO when ``path`` is a ``.rec`` file or a folder with ``train.rec``, else an image folder."""
    p = Path(path)
    if p.suffix == ".rec" or (p / "train.rec").is_file():
        return RecordIODataset(p, size)
    return ImageFolderDataset(p, size)


# --- synthetic identities (tests only) ---------------------------------------------------------------

def synthetic_identity_images(num_ids: int, per_id: int, size: int = 112, seed: int = 0,
                              noise: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic toy set: ``(num_ids * per_id, size, size, 3)`` BGR uint8 and labels.

    Each identity is a smooth random colour pattern (a 6x6 random grid, cubic-upsampled), each
    image that pattern shifted by up to 3 px, with a random gain and Gaussian pixel noise - easy
    to tell apart at full resolution, harder after degradation. Not a face: tests only.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for ident in range(num_ids):
        grid = rng.uniform(30, 225, (6, 6, 3)).astype(np.float32)
        base = cv2.resize(grid, (size + 8, size + 8), interpolation=cv2.INTER_CUBIC)
        for _ in range(per_id):
            dy, dx = rng.integers(0, 7, 2)
            img = base[dy:dy + size, dx:dx + size] * rng.uniform(0.85, 1.15)
            img = img + rng.normal(0, noise, img.shape)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(ident)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def make_synthetic_identities(root: str | os.PathLike, num_ids: int = 8, per_id: int = 4, size: int = 112,
                              seed: int = 0, prefix: str = "id") -> Path:
    """Write ``synthetic_identity_images`` as ``root/<prefix>_XXXX/NNN.png`` (lossless) and return root."""
    root = Path(root)
    images, labels = synthetic_identity_images(num_ids, per_id, size, seed)
    for k, (img, label) in enumerate(zip(images, labels)):
        d = root / f"{prefix}_{label:04d}"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{k:04d}.png"), img)
    return root

"""Data: image folders, the InsightFace RecordIO reader/writer, the synthetic generator."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch

from training.data import (RECORDIO_MAGIC, ImageFolderDataset, RecordIODataset, build_dataset,
                           make_synthetic_identities, normalize, pack_record, read_record,
                           synthetic_identity_images, unpack_record, write_record, write_recordio)


def test_image_folder_gives_rgb_in_unit_range(tmp_path):
    (tmp_path / "bob").mkdir()
    (tmp_path / "alice").mkdir()
    img = np.zeros((112, 112, 3), np.uint8)
    img[..., 2] = 255  # pure red in BGR
    cv2.imwrite(str(tmp_path / "bob" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "alice" / "b.png"), np.full((100, 100, 3), 128, np.uint8))  # resized
    (tmp_path / "alice" / "notes.txt").write_text("ignored")
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["alice", "bob"] and ds.num_classes == 2 and len(ds) == 2
    x, y = ds[1]
    assert y == 1 and x.dtype == torch.float32 and x.shape == (3, 112, 112)
    assert torch.allclose(x[0], torch.ones(112, 112)) and x[1:].abs().max() == 0  # R first
    x0, _ = ds[0]
    assert x0.shape == (3, 112, 112) and torch.allclose(x0, torch.full_like(x0, 128 / 255), atol=1e-6)
    # Model input convention (x - 127.5) / 128 on 0..255 pixels.
    assert torch.allclose(normalize(torch.tensor([0.0, 1.0])), torch.tensor([-127.5 / 128, 127.5 / 128]))


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode"):
        ImageFolderDataset(tmp_path)[0]


def test_record_split_at_magic_words_round_trips(tmp_path):
    magic = struct.pack("<I", RECORDIO_MAGIC)
    # Magic words at 4-aligned offsets 0 and 8 (split points) and at offset 13 (unaligned: kept),
    # and an odd total length (padding).
    payload = magic + b"abcd" + magic + b"x" + magic + b"tail!"
    path = tmp_path / "r.rec"
    with open(path, "wb") as f:
        write_record(f, payload)
        write_record(f, b"second")
    raw = path.read_bytes()
    assert len(raw) % 4 == 0
    flags = []
    off = 0
    while off < len(raw):
        m, lrec = struct.unpack("<II", raw[off:off + 8])
        assert m == RECORDIO_MAGIC
        flags.append(lrec >> 29)
        off += 8 + (((lrec & ((1 << 29) - 1)) + 3) & ~3)
    assert flags == [1, 2, 3, 0]  # first / middle / last part, then a whole record
    with open(path, "rb") as f:
        assert read_record(f) == payload
        assert read_record(f) == b"second"
        assert read_record(f) is None


def test_irheader_pack_unpack():
    flag, label, id_, id2, rest = unpack_record(pack_record(7.0, b"jpeg", id_=3, id2=4))
    assert (flag, label, id_, id2, rest) == (0, 7.0, 3, 4, b"jpeg")
    flag, label, *_, rest = unpack_record(pack_record([5, 9], b""))
    assert flag == 2 and label.tolist() == [5.0, 9.0] and rest == b""


def test_recordio_round_trip_matches_the_images(tmp_path):
    images, labels = synthetic_identity_images(3, 2, seed=1)
    jpegs = [cv2.imencode(".jpg", im)[1].tobytes() for im in images]
    rec, idx = write_recordio(tmp_path / "train", zip(jpegs, labels.tolist()))
    ds = build_dataset(tmp_path)  # a folder holding train.rec/train.idx
    assert isinstance(ds, RecordIODataset)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.keys == [1, 2, 3, 4, 5, 6]
    for i in range(6):
        x, y = ds[i]
        ref = cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1] / 255.0
        assert y == labels[i]
        np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), ref, atol=1e-6)
    # The identity-range records after the images, as InsightFace writes them.
    with open(rec, "rb") as f:
        f.seek(ds.offsets[7])
        flag, rng, *_ = unpack_record(read_record(f))
    assert flag == 2 and rng.tolist() == [1.0, 3.0]
    # Survives pickling (DataLoader workers) and reopens its file handle.
    import pickle
    ds2 = pickle.loads(pickle.dumps(ds))
    assert torch.equal(ds2[5][0], ds[5][0])


def test_recordio_without_header_uses_every_key(tmp_path):
    images, labels = synthetic_identity_images(2, 2, seed=2)
    with open(tmp_path / "plain.rec", "wb") as rec, open(tmp_path / "plain.idx", "w") as idx:
        for key, (im, lab) in enumerate(zip(images, labels)):
            idx.write(f"{key}\t{rec.tell()}\n")
            write_record(rec, pack_record(float(lab), cv2.imencode(".png", im)[1].tobytes()))
    ds = RecordIODataset(tmp_path / "plain.rec")
    assert ds.keys == [0, 1, 2, 3] and ds.num_classes == 2
    assert [ds[i][1] for i in range(4)] == labels.tolist()


def test_recordio_rejects_a_bad_magic(tmp_path):
    (tmp_path / "bad.rec").write_bytes(b"\0" * 16)
    (tmp_path / "bad.idx").write_text("0\t0\n")
    with pytest.raises(ValueError, match="magic"):
        RecordIODataset(tmp_path / "bad.rec")


def test_synthetic_identities_are_deterministic_and_distinct(tmp_path):
    a, la = synthetic_identity_images(3, 2, seed=5)
    b, lb = synthetic_identity_images(3, 2, seed=5)
    c, _ = synthetic_identity_images(3, 2, seed=6)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    same = np.abs(a[0].astype(float) - a[1]).mean()
    other = np.abs(a[0].astype(float) - a[2]).mean()
    assert same < other  # two images of one identity are closer than two identities
    root = make_synthetic_identities(tmp_path / "syn", 3, 2, seed=5)
    ds = ImageFolderDataset(root)
    assert len(ds) == 6 and ds.num_classes == 3
    assert np.array_equal((ds[0][0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8), a[0])

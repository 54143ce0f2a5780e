"""test_data.py — kiln.data: the strict IDX parser on crafted bytes (valid files and every error
path), load_fashion_mnist on crafted folders and, when Debian's dataset-fashion-mnist is
installed, on the real files; the normalising batch iterator."""
import gzip
import os
import struct

import numpy as np
import pytest

from kiln import data
from kiln.data import fashion_mnist as fm


def idx_bytes(magic, shape, payload=None):
    payload = bytes(int(np.prod(shape))) if payload is None else payload
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in shape) + payload


def write_split(root, images, labels, split="train", gz=True):
    """Writes IDX files for a split; images uint8 [N, H, W], labels uint8 [N]."""
    img_name, lab_name = fm._FILES[split]
    for name, magic, a in ((img_name, fm.IMAGES_MAGIC, images), (lab_name, fm.LABELS_MAGIC, labels)):
        raw = idx_bytes(magic, a.shape, np.ascontiguousarray(a, np.uint8).tobytes())
        (root / name).write_bytes(gzip.compress(raw) if gz else raw)


def test_parse_idx_valid(rng):
    a = rng.integers(0, 256, size=(2, 3, 4), dtype=np.uint8)
    got = data.parse_idx(idx_bytes(0x803, a.shape, a.tobytes()), 0x803)
    assert got.dtype == np.uint8 and got.flags.writeable
    np.testing.assert_array_equal(got, a)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(0x801, (3,), b"\x01\x02\x09"), 0x801), [1, 2, 9])
    assert data.parse_idx(idx_bytes(0x803, (0, 28, 28), b""), 0x803).shape == (0, 28, 28)


@pytest.mark.parametrize("raw, magic, msg", [
    (b"\0\0\x08", 0x801, "3 bytes, too short"),
    (idx_bytes(0x803, (1, 2, 2)), 0x801, "magic number 0x00000803, expected 0x00000801"),
    (idx_bytes(0x901, (2,)), 0x801, "magic number 0x00000901"),  # type 0x09: signed bytes
    (b"\x01\0\x08\x01" + struct.pack(">I", 1) + b"\0", 0x801, "magic number 0x01000801"),
    (b"\0\0\x08\x03" + struct.pack(">I", 1), 0x803, r"truncated header \(8 bytes; 3 dimensions need 16\)"),
    (idx_bytes(0x801, (4,), b"\0\0\0"), 0x801, r"dimensions \[4\] need 12 bytes but it holds 11"),
    (idx_bytes(0x801, (2,), b"\0\0\0"), 0x801, r"dimensions \[2\] need 10 bytes but it holds 11"),
    (idx_bytes(0x803, (2 ** 32 - 1,) * 3, b""), 0x803, r"dimensions \[4294967295, .*\] need 7922"),
], ids=["short", "other-ndim", "other-type", "high-byte", "truncated-dims", "too-few", "too-many", "huge"])
def test_parse_idx_errors(raw, magic, msg):
    with pytest.raises(ValueError, match=r"IDX src\.idx: " + msg):
        data.parse_idx(raw, magic, "src.idx")


def test_read_idx_plain_gzip_and_corrupt(tmp_path):
    raw = idx_bytes(0x801, (3,), b"\x00\x05\x09")
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "gz").write_bytes(gzip.compress(raw))
    (tmp_path / "bad").write_bytes(gzip.compress(raw)[:-6])
    for name in ("plain", "gz"):
        assert data.read_idx(tmp_path / name, 0x801).tolist() == [0, 5, 9]
    with pytest.raises(ValueError, match="bad: corrupt gzip data"):
        data.read_idx(tmp_path / "bad", 0x801)


def test_load_crafted_folder(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], np.uint8)
    write_split(tmp_path, images, labels, "test")
    x, y = data.load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(x, images)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 3, 3, 1]


@pytest.mark.parametrize("images, labels, msg", [
    (np.zeros((2, 28, 27)), np.zeros(2), "images are 28x27, expected 28x28"),
    (np.zeros((2, 28, 28)), np.zeros(3), "holds 2 images but .* holds 3 labels"),
    (np.zeros((2, 28, 28)), np.array([1, 10]), r"label 10 out of range \[0, 10\)"),
])
def test_load_inconsistent(tmp_path, images, labels, msg):
    write_split(tmp_path, images, labels)
    with pytest.raises(ValueError, match=msg):
        data.load_fashion_mnist(root=tmp_path)


def test_load_missing_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(root=tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_fashion_mnist("valid")


def test_batches(rng):
    images = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    labels = np.arange(10, dtype=np.uint8)
    got = list(data.batches(images, labels, 4))
    assert [len(y) for _, y in got] == [4, 4, 2]
    x, y = got[0]
    assert x.dtype == np.float32 and x.shape == (4, 1, 28, 28) and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0], (images[:4] / 255 - 0.2860) / 0.3530, rtol=1e-6, atol=1e-6)
    assert [len(y) for _, y in data.batches(images, labels, 4, drop_last=True)] == [4, 4]
    a = np.concatenate([y for _, y in data.batches(images, labels, 3, shuffle=True, seed=7)])
    b = np.concatenate([y for _, y in data.batches(images, labels, 3, shuffle=True, seed=7)])
    c = np.concatenate([y for _, y in data.batches(images, labels, 3, shuffle=True, seed=8)])
    assert sorted(a.tolist()) == list(range(10)) and a.tolist() == b.tolist() and a.tolist() != c.tolist()
    for xb, yb in data.batches(images, labels, 3, shuffle=True, seed=7):  # images stay with their labels
        np.testing.assert_allclose(xb[:, 0], (images[yb] / 255 - data.MEAN) / data.STD, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(data.batches(images, labels, 0))
    with pytest.raises(ValueError, match="need images"):
        next(data.batches(images, labels[:3], 2))


REAL = all(os.path.exists(os.path.join(fm.DEFAULT_ROOT, f)) for pair in fm._FILES.values() for f in pair)


@pytest.mark.skipif(not REAL, reason=f"Fashion-MNIST not installed in {fm.DEFAULT_ROOT} "
                                     "(apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_files(split, n):
    x, y = data.load_fashion_mnist(split)
    assert x.shape == (n, 28, 28) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [n // 10] * 10  # balanced classes
    if split == "train":  # the documented normalisation constants
        assert abs(x.mean() / 255 - data.MEAN) < 1e-4 and abs(x.std() / 255 - data.STD) < 1e-4
        xb, _ = next(data.batches(x, y, 60000))
        assert abs(float(xb.mean())) < 1e-3 and abs(float(xb.std()) - 1) < 1e-3

"""fashion_mnist.py — Fashion-MNIST (Zalando; 28x28 grey images of 10 clothing classes, 60000
train + 10000 test) read from IDX files with a strict parser, and a shuffling batch iterator
yielding normalised float32 images [B, 1, 28, 28] with int64 labels."""
import gzip
import os
import zlib

import numpy as np

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian: apt-get install dataset-fashion-mnist
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3-d / 1-d
# Mean and standard deviation of the training images' pixels scaled to [0, 1] (over all 60000 x
# 28 x 28 pixels, rounded to 4 digits); batches() normalises with them: (x / 255 - MEAN) / STD.
MEAN, STD = 0.2860, 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def parse_idx(data, magic, source="<bytes>"):
    """An IDX file's bytes as a uint8 numpy array. magic is the expected 32-bit big-endian magic
    number: 0x00000800 | ndim, with type 0x08 (unsigned byte), the only type Fashion-MNIST uses.
    Raises ValueError naming source for a wrong magic, truncated dims or a size mismatch."""
    data = memoryview(data).cast("B")
    if len(data) < 4:
        raise ValueError(f"IDX {source}: {len(data)} bytes, too short for the 4-byte magic number")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise ValueError(f"IDX {source}: magic number 0x{got:08x}, expected 0x{magic:08x} "
                         f"(unsigned bytes, {magic & 0xff}-d)")
    ndim = magic & 0xff
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"IDX {source}: truncated header ({len(data)} bytes; {ndim} dimensions need {4 + 4 * ndim})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    want = 4 + 4 * ndim + int(np.prod(shape, dtype=object))
    if len(data) != want:
        raise ValueError(f"IDX {source}: dimensions {list(shape)} need {want} bytes but it holds {len(data)}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def read_idx(path, magic):
    """parse_idx of a file, gunzipped first when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"IDX {path}: corrupt gzip data ({e})") from None
    return parse_idx(raw, magic, str(path))


def load_fashion_mnist(split="train", root=None):
    """(images uint8 [N, 28, 28], labels int64 [N]) of split "train" (N = 60000) or "test"
    (N = 10000), from root (default /usr/share/datasets/fashion-mnist, Debian's
    dataset-fashion-mnist package). Raises FileNotFoundError naming the package when files are
    missing and ValueError for malformed or inconsistent files."""
    if split not in _FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    root = DEFAULT_ROOT if root is None else os.fspath(root)
    paths = [os.path.join(root, name) for name in _FILES[split]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"load_fashion_mnist: {', '.join(missing)} not found; install Debian's "
                                f"dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) "
                                f"or pass root= a folder holding {' and '.join(_FILES[split])}")
    images, labels = read_idx(paths[0], IMAGES_MAGIC), read_idx(paths[1], LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"IDX {paths[0]}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(f"load_fashion_mnist: {paths[0]} holds {len(images)} images but {paths[1]} "
                         f"holds {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"IDX {paths[1]}: label {int(labels.max())} out of range [0, {len(CLASSES)})")
    return images, labels.astype(np.int64)


def batches(images, labels, batch_size, shuffle=False, seed=0, drop_last=False):
    """Yields (x float32 [B, 1, H, W], y int64 [B]) numpy batches: x = (images / 255 - MEAN) / STD.
    shuffle permutes the samples with numpy's default_rng(seed) (the same seed gives the same
    order); the last batch is smaller unless drop_last."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"batches: need images [N, H, W] and labels [N], got {images.shape} and {labels.shape}")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    n = len(images)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        x = (images[idx].astype(np.float32) * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
        yield x[:, None], labels[idx].astype(np.int64)

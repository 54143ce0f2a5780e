"""kiln.data — data sets for training examples and tests: Fashion-MNIST from Debian's
dataset-fashion-mnist package (IDX files), and a batch iterator that normalises it."""
from .fashion_mnist import CLASSES, MEAN, STD, batches, load_fashion_mnist, parse_idx, read_idx

__all__ = ["CLASSES", "MEAN", "STD", "batches", "load_fashion_mnist", "parse_idx", "read_idx"]

"""conftest.py — pytest setup for kiln's Python tests: puts <repo>/python on sys.path so that
`pytest tests/python` works without PYTHONPATH, and gives each test a seeded numpy RNG."""
import pathlib
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: reproducible, different per case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

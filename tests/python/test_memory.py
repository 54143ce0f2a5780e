"""test_memory.py — kiln.memory: switching pools, statistics as tensors come and go, reuse of
freed blocks by the page pool, trim, and the KILN_MEMORY_POOL environment variable."""
import gc
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import kiln
from kiln import memory

PAGE, HEADER = 4096, 64


@pytest.fixture
def page_pool():
    """Each test starts with the page pool, nothing cached, peak reset, and ends the same way."""
    gc.collect()
    memory.set_pool("page")
    memory.trim()
    memory.reset_peak()
    yield
    gc.collect()
    memory.set_pool("page")
    memory.trim()


def test_stats_fields(page_pool):
    s = memory.stats()
    assert set(s) == {"pool", "bytes_in_use", "peak_bytes", "bytes_reserved", "n_allocs", "n_frees", "n_reused"}
    assert s["pool"] == "page"
    assert s["peak_bytes"] == s["bytes_in_use"] >= 0
    memory.set_pool("none")
    assert memory.stats()["pool"] == "none"
    with pytest.raises(ValueError, match="unknown pool"):
        memory.set_pool("slab")


def test_tensors_counted_and_reused(page_pool):
    s0 = memory.stats()
    t = kiln.array(np.ones((10, 30), np.float32))
    s1 = memory.stats()
    assert s1["bytes_in_use"] - s0["bytes_in_use"] == 1200
    assert s1["n_allocs"] - s0["n_allocs"] == 1
    assert s1["bytes_reserved"] - s0["bytes_reserved"] == HEADER + PAGE
    del t
    gc.collect()
    s2 = memory.stats()
    assert s2["bytes_in_use"] == s0["bytes_in_use"]
    assert s2["n_frees"] - s0["n_frees"] == 1
    assert s2["bytes_reserved"] == s1["bytes_reserved"]  # cached by the page pool
    u = kiln.zeros((500,), kiln.float64)  # 4000 bytes: the same one-page block, zeroed
    assert memory.stats()["n_reused"] - s0["n_reused"] == 1
    np.testing.assert_array_equal(u.numpy(), np.zeros(500))
    assert memory.stats()["peak_bytes"] - s0["bytes_in_use"] == 4000
    del u
    gc.collect()
    memory.trim()
    assert memory.stats()["bytes_reserved"] == s0["bytes_reserved"]


def test_no_pool_and_switching_with_live_tensors(page_pool):
    s0 = memory.stats()
    a = kiln.array(np.arange(2000, dtype=np.float32))  # page pool: 2 pages
    memory.set_pool("none")
    b = kiln.array(np.arange(2000, dtype=np.float32))  # no pool: 8000 bytes
    s1 = memory.stats()
    assert s1["bytes_reserved"] - s0["bytes_reserved"] == 2 * HEADER + 2 * PAGE + 8000
    np.testing.assert_array_equal((a + b).numpy(), 2 * np.arange(2000, dtype=np.float32))
    del a, b
    gc.collect()
    s2 = memory.stats()
    assert s2["bytes_in_use"] == s0["bytes_in_use"]
    # a returned to the page pool's cache though the current pool is "none"; b to the system
    assert s2["bytes_reserved"] - s0["bytes_reserved"] == HEADER + 2 * PAGE
    assert s2["n_reused"] == s0["n_reused"]
    memory.reset_peak()
    assert memory.stats()["peak_bytes"] == s2["bytes_in_use"]


@pytest.mark.parametrize("env,expected", [("none", "none"), ("page", "page"), (None, "page")])
def test_env_var_picks_default_pool(env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "KILN_MEMORY_POOL"}
    environ["PYTHONPATH"] = str(pathlib.Path(kiln.__file__).resolve().parents[1])
    if env is not None:
        environ["KILN_MEMORY_POOL"] = env
    code = "import kiln; print(kiln.memory.stats()['pool'])"
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected

"""test_checkpoint.py — kiln.save_safetensors / load_safetensors / save_model / load_model: round
trips of every dtype, interop with the format checked by a pure-Python reader and writer (json +
struct; no safetensors package needed), error paths, and models through state_dict."""
import json
import struct

import numpy as np
import pytest

import kiln
from kiln.errors import ValueError_

NP_CODES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I8": "i1", "U8": "u1",
            "BOOL": "?"}


def read_py(path):
    """A pure-Python safetensors reader: (header dict, data bytes)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    return json.loads(raw[8:8 + n].decode("utf-8")), raw[8 + n:]


def write_py(path, entries, metadata=None):
    """A pure-Python safetensors writer: entries is a list of (name, dtype code, shape, bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, code, shape, payload in entries:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def bf16_bytes(values):
    """BF16 bytes of float32-exact values with 8-bit mantissas (the top half of each float32)."""
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def sample(rng):
    out = {}
    for code, np_dt in NP_CODES.items():
        a = rng.normal(size=(2, 3)) * 50
        out[f"w.{code}"] = (a > 0) if code == "BOOL" else a.astype(np_dt)
    out["scalar"] = np.float32(3.5).reshape(())
    out["empty"] = np.zeros((0, 4), np.int64)
    out["naïve \"name\"\n"] = np.arange(5, dtype=np.int32)
    return out


def test_roundtrip_every_dtype(tmp_path, rng):
    arrays = sample(rng)
    tensors = dict(arrays)
    tensors["bf"] = kiln.array([1.5, -2.0, 0.25]).astype(kiln.bfloat16)
    path = tmp_path / "x.safetensors"
    kiln.save_safetensors(path, tensors)
    loaded = kiln.load_safetensors(str(path))
    assert list(loaded) == list(tensors)
    for name, a in arrays.items():
        t = loaded[name]
        assert isinstance(t, kiln.Tensor)
        assert t.dtype == kiln.dtypes.as_dtype(a.dtype) and t.shape == a.shape
        np.testing.assert_array_equal(t.numpy(), a)
    assert loaded["bf"].dtype is kiln.bfloat16
    np.testing.assert_array_equal(loaded["bf"].numpy(), [1.5, -2.0, 0.25])


def test_kiln_file_read_by_python(tmp_path, rng):
    arrays = sample(rng)
    path = tmp_path / "x.safetensors"
    kiln.save_safetensors(path, {**arrays, "bf": kiln.array([1.5, -3.0]).astype(kiln.bfloat16)})
    header, data = read_py(path)
    assert header.pop("__metadata__") == {"format": "pt"}
    assert list(header) == [*arrays, "bf"]
    end = 0
    for name, a in arrays.items():
        info = header[name]
        assert info["dtype"] == next(c for c, d in NP_CODES.items() if np.dtype(d) == a.dtype)
        assert info["shape"] == list(a.shape)
        b, e = info["data_offsets"]
        assert b == end and e - b == a.nbytes
        np.testing.assert_array_equal(np.frombuffer(data[b:e], NP_CODES[info["dtype"]]).reshape(a.shape), a)
        end = e
    assert header["bf"] == {"dtype": "BF16", "shape": [2], "data_offsets": [end, end + 4]}
    assert data[end:] == bf16_bytes([1.5, -3.0])


def test_python_file_read_by_kiln(tmp_path):
    path = tmp_path / "py.safetensors"
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    entries = [("b", "BF16", [2], bf16_bytes([0.5, -8.0])), ("a", "F32", [2, 3], a.tobytes()),
               ("s", "I64", [], struct.pack("<q", -7)), ("z", "U8", [0, 2], b""), ("é\u2603", "BOOL", [3], b"\x00\x01\x05")]
    write_py(path, entries, metadata={"format": "pt", "note": "hand-made"})
    loaded = kiln.load_safetensors(path)
    assert list(loaded) == ["b", "a", "s", "z", "é\u2603"]
    assert loaded["b"].dtype is kiln.bfloat16 and loaded["b"].numpy().tolist() == [0.5, -8.0]
    np.testing.assert_array_equal(loaded["a"].numpy(), a)
    assert loaded["s"].shape == () and loaded["s"].item() == -7
    assert loaded["z"].shape == (0, 2) and loaded["z"].dtype is kiln.uint8
    assert loaded["é\u2603"].numpy().tolist() == [False, True, True]


def test_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    write_py(bad, [("a", "F32", [3], b"\0" * 8)])
    with pytest.raises(ValueError_, match=r"bad\.safetensors.*tensor 'a' \(F32 \[3\]\) needs 12 bytes"):
        kiln.load_safetensors(bad)
    write_py(bad, [("a", "F8_E5M2", [1], b"\0")])
    with pytest.raises(kiln.UnsupportedError, match="dtype 'F8_E5M2'"):
        kiln.load_safetensors(bad)
    bad.write_bytes(b"\x05\0\0\0")
    with pytest.raises(ValueError_, match="truncated file"):
        kiln.load_safetensors(bad)
    with pytest.raises(OSError, match="cannot open"):
        kiln.load_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError_, match="reserved"):
        kiln.save_safetensors(bad, {"__metadata__": np.zeros(1)})
    with pytest.raises(TypeError, match="names must be str"):
        kiln.save_safetensors(bad, {1: np.zeros(1)})
    with pytest.raises(TypeError, match="traced tensor"):
        kiln.trace(lambda x: kiln.save_safetensors(bad, {"x": x}) or x, np.zeros(2, np.float32))


def _model():
    return kiln.nn.Sequential(kiln.nn.Linear(4, 3), kiln.nn.ReLU(), kiln.nn.BatchNorm2d(3))


def test_save_load_model(tmp_path):
    src, dst = _model(), _model()
    path = tmp_path / "m.safetensors"
    kiln.save_model(src, path)
    header, _ = read_py(path)
    assert [k for k in header if k != "__metadata__"] == list(src.state_dict())
    kiln.load_model(dst, path)
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)


def test_load_model_mismatch(tmp_path):
    path = tmp_path / "m.safetensors"
    state = _model().state_dict()
    state["0.weight"] = np.zeros((5, 4), np.float32)
    state["extra"] = np.zeros(1, np.float32)
    del state["0.bias"]
    kiln.save_safetensors(path, state)
    dst = _model()
    before = dst.state_dict()
    with pytest.raises(ValueError_, match=r"missing: 0\.bias.*unexpected: extra.*0\.weight: shape \(5, 4\)"):
        kiln.load_model(dst, path)
    for k, a in dst.state_dict().items():
        np.testing.assert_array_equal(a, before[k])

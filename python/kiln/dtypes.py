"""dtypes.py — kiln's dtypes as Python objects, with their numpy counterparts and the rules that
turn user input (names, numpy/torch dtypes, Python values) into one."""
import numpy as np


class DType:
    """A kiln dtype; `code` is the C enum value (kiln_dtype)."""

    def __init__(self, code, name, short, np_dtype):
        self.code, self.name, self.short, self.np_dtype = code, name, short, np_dtype

    def __repr__(self):
        return f"kiln.{self.name}"

    def __eq__(self, other):
        try:
            return self is as_dtype(other)
        except (TypeError, ValueError):
            return False

    def __hash__(self):
        return hash(self.code)

    @property
    def is_floating_point(self):
        return self.short in ("f32", "f64", "f16", "bf16")


float32 = DType(0, "float32", "f32", np.dtype(np.float32))
float64 = DType(1, "float64", "f64", np.dtype(np.float64))
float16 = DType(2, "float16", "f16", np.dtype(np.float16))
bfloat16 = DType(3, "bfloat16", "bf16", None)  # numpy has none: .numpy() gives float32
int8 = DType(4, "int8", "i8", np.dtype(np.int8))
uint8 = DType(5, "uint8", "u8", np.dtype(np.uint8))
int32 = DType(6, "int32", "i32", np.dtype(np.int32))
int64 = DType(7, "int64", "i64", np.dtype(np.int64))
bool_ = DType(8, "bool", "bool", np.dtype(np.bool_))

ALL = (float32, float64, float16, bfloat16, int8, uint8, int32, int64, bool_)
BY_CODE = {d.code: d for d in ALL}
_BY_NAME = {n: d for d in ALL for n in (d.name, d.short)}
_BY_NAME.update({"float": float32, "half": float16, "double": float64, "int": int64, "long": int64,
                 "bool_": bool_})
_BY_NP = {d.np_dtype: d for d in ALL if d.np_dtype is not None}


def as_dtype(x):
    """kiln dtype from a DType, a name ("float32", "f32"), a numpy dtype or a torch dtype."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        if x in _BY_NAME:
            return _BY_NAME[x]
        raise ValueError(f"unknown dtype '{x}' (kiln has {', '.join(d.name for d in ALL)})")
    mod = type(x).__module__
    if mod.startswith("torch"):
        name = str(x).split(".")[-1]
        return as_dtype(name)
    try:
        nd = np.dtype(x)
    except TypeError:
        raise TypeError(f"cannot interpret {x!r} as a kiln dtype") from None
    if nd in _BY_NP:
        return _BY_NP[nd]
    raise TypeError(f"numpy dtype {nd} has no kiln counterpart")


def from_code(code):
    return BY_CODE[code]

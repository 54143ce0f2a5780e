"""kiln — a deep-learning compiler for training; this package is its Python API (numpy-like
eager ops, tracing to IR, models and layers) over the C library libkiln.so."""
from . import dtypes
from ._core import Tensor
from . import _methods  # noqa: F401  (operators and indexing on Tensor)
from .dlpack import from_dlpack
from .dtypes import bfloat16, bool_, float16, float32, float64, int8, int32, int64, uint8
from .errors import Error, ParseError, UnsupportedError
from .ops import *  # noqa: F401,F403
from .trace import Trace, TracedFunction, parse, trace
from .model import Model, Parameter
from . import cuda, memory, models, nn, optim
from .devices import Device, device
from .trainer import Trainer
from .compiler import Compiled, analyze, compile, dialect  # noqa: F401  (compile shadows the builtin)
from .autograd import no_grad
from .checkpoint import load_model, load_safetensors, save_model, save_safetensors
from .ops import all, any, abs, max, min, round, sum  # noqa: F401  (numpy names shadowing builtins)

__version__ = "0.1.0"

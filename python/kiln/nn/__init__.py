"""kiln.nn — layers with torch.nn's names, arguments, parameter layouts and initialisation; every
layer is a kiln.Model (same parameters, buffers, modes, state dicts and tracing)."""
from . import init
from .activation import GELU, LeakyReLU, ReLU, SiLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .containers import ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .linear import Identity, Linear
from .norm import BatchNorm2d, LayerNorm
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

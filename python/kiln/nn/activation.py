"""activation.py — elementwise activation layers and softmax (torch.nn's names and arguments)."""
from .. import ops
from ..model import Model


class ReLU(Model):
    def build(self, inplace=False):
        pass  # kiln tensors are values: inplace changes nothing

    def forward(self, input):
        return ops.relu(input)


class GELU(Model):
    def build(self, approximate="none"):
        self.approximate = approximate

    def forward(self, input):
        return ops.gelu(input, self.approximate)

    def extra_repr(self):
        return f"approximate='{self.approximate}'"


class SiLU(Model):
    def build(self, inplace=False):
        pass

    def forward(self, input):
        return ops.silu(input)


class Tanh(Model):
    def forward(self, input):
        return ops.tanh(input)


class Sigmoid(Model):
    def forward(self, input):
        return ops.sigmoid(input)


class LeakyReLU(Model):
    def build(self, negative_slope=0.01, inplace=False):
        self.negative_slope = negative_slope

    def forward(self, input):
        return ops.leaky_relu(input, self.negative_slope)


class Softmax(Model):
    def build(self, dim=-1):
        self.dim = dim

    def forward(self, input):
        return ops.softmax(input, self.dim)

"""dropout.py — Dropout (torch.nn.Dropout): in train mode zeroes each element with probability p
and scales the rest by 1/(1-p); the mask comes from the model tree's next key (Model.next_key,
reproducible through Model.seed(n)); identity in infer mode."""
from .. import ops
from ..model import Model


class Dropout(Model):
    def build(self, p=0.5, inplace=False):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p = float(p)

    def forward(self, input):
        if not self.training or self.p == 0.0:
            return input
        if self.p == 1.0:
            return ops.zeros_like(input)
        return ops.dropout(input, self.next_key(), self.p)

    def extra_repr(self):
        return f"p={self.p}"

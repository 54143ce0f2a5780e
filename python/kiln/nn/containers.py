"""containers.py — Sequential (runs its layers in order) and ModuleList (an indexable list of
models); children are named "0", "1", ... as in torch."""
import collections

from ..model import Model


class ModuleList(Model):
    def build(self, modules=()):
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        if not isinstance(index, slice):
            return items[index]
        part = type(self)(items[index]) if type(self) is ModuleList else type(self)(*items[index])
        part._share_keys(self._keys)  # the slice's children keep drawing dropout keys from this tree
        return part


class Sequential(ModuleList):
    """Sequential(layer, ...) or Sequential(OrderedDict(name=layer, ...))."""

    def build(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], collections.OrderedDict):
            for name, m in layers[0].items():
                setattr(self, name, m)
        else:
            super().build(layers)

    def forward(self, input):
        for m in self._modules.values():
            input = m(input)
        return input

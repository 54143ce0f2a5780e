import sys, os
sys.path.insert(0, "bench"); sys.path.insert(0, "python")
import numpy as np, kiln
from kiln.models import ResNet50
m = ResNet50(num_classes=10, blocks=(1, 1, 1, 1), width=8, seed=0)
tr = kiln.Trainer(m, kiln.cross_entropy, kiln.optim.SGD(lr=0.025, momentum=0.9), executor="interp")
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32); y = rng.integers(0, 10, 4).astype(np.int64)
for i in range(2):
    print("step", i, tr.step(x, y), flush=True)

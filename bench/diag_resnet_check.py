"""diag_resnet_check.py — a small ResNet (blocks 1,1,1,1, width 8, 32x32) trained two steps in
the interpreter; run with KILN_VM_CHECK=1 KILN_VM_CHECK_DEVICE=cuda KILN_CUDA_TF32=0 on a GPU
machine, every step is also compiled for CUDA and compared with the interpreter (an error names
the first result element that differs). It found float accumulation in CUDA reductions
(batch-norm gradients off by 1e-3)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import numpy as np  # noqa: E402
import kiln  # noqa: E402
from kiln.models import ResNet50  # noqa: E402

m = ResNet50(num_classes=10, blocks=(1, 1, 1, 1), width=8, seed=0)
tr = kiln.Trainer(m, kiln.cross_entropy, kiln.optim.SGD(lr=0.025, momentum=0.9), executor="interp")
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, 4).astype(np.int64)
for i in range(2):
    print("step", i, tr.step(x, y), flush=True)

"""resnet50.py — ResNet-50 training steps on the GPU: kiln's compiled step (kiln.Trainer on
"cuda", replayed as a CUDA graph) against PyTorch eager and torch.compile in the same run, from
the same initial weights on the same batches.

    KILN_LIB=build/libkiln.so PYTHONPATH=python python3 bench/resnet50.py [--batch 64] [--image 224]
        [--steps 20] [--warmup 3] [--check-steps 10] [--no-cuda-graph] [--no-tf32]
        [--systems kiln,eager,compile]
    python bench/resnet50.py --cpu-smoke  # one bottleneck per stage, width 8, 64x64, 10 classes,
                                          # batch 8, 2 steps, kiln vs torch eager on the CPU

ResNet-50 (kiln.models.ResNet50, torchvision's layout; TorchResNet50 below is its torch twin
with the same parameter names) on random 224x224 images with 1000 classes, batch 64, SGD (lr
0.025, momentum 0.9, weight decay 1e-4), NCHW. Model FLOPs: 3 x the forward's multiply-adds x 2
(forward + backward of every convolution and linear layer, counted on the torch twin).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gpu_common  # noqa: E402  (first: sets up threads, sys.path)
import kiln  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from cpu_train import copy_weights  # noqa: E402
from kiln.models import ResNet50  # noqa: E402

SMOKE = dict(blocks=(1, 1, 1, 1), width=8, image=64, classes=10, batch=8, steps=2, warmup=1)


class TorchBottleneck(torch.nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv), as kiln.models.Bottleneck."""

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(width)
        self.conv3 = torch.nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or in_channels != 4 * width:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4 * width, 1, stride=stride, bias=False),
                                                  torch.nn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet50(torch.nn.Module):
    """torchvision.models.resnet50's structure and names (torchvision need not be installed)."""

    def __init__(self, num_classes=1000, blocks=(3, 4, 6, 3), width=64):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        channels = width
        for i, n in enumerate(blocks):
            stage = []
            for j in range(n):
                stage.append(TorchBottleneck(channels, width << i, 2 if i and not j else 1))
                channels = 4 * (width << i)
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(*stage))
        self.fc = torch.nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def forward_macs(net, image):
    """Multiply-adds of one image's forward pass through net's convolutions and linear layers."""
    total = []

    def count(m, inputs, out):
        if isinstance(m, torch.nn.Conv2d):
            total.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            total.append(out.numel() * m.in_features)
    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, image, image))
    net.train()
    for h in hooks:
        h.remove()
    return sum(total)


def main(argv=None):
    ap = gpu_common.parser(__doc__)
    ap.add_argument("--image", type=int, default=224, help="image height and width")
    ap.add_argument("--classes", type=int, default=1000, help="classes")
    ap.add_argument("--lr", type=float, default=0.025, help="SGD learning rate")
    args = ap.parse_args(argv)
    args.blocks, args.width = (3, 4, 6, 3), 64
    if args.cpu_smoke:
        vars(args).update(SMOKE)
    args.batch = args.batch or 64
    device, systems = gpu_common.setup(args)

    model = ResNet50(args.classes, args.blocks, args.width, seed=args.seed)
    net = TorchResNet50(args.classes, args.blocks, args.width)
    copy_weights(model, net)
    n_params = sum(p.size for p in model.parameters())
    flops = 3 * 2 * forward_macs(net, args.image) * args.batch
    title = (f"ResNet-50 (blocks {args.blocks}, width {args.width}): {args.image}x{args.image} images, "
             f"{args.classes} classes, batch {args.batch}, SGD momentum")
    gpu_common.header(args, title, device, n_params, flops)

    def make_trainer(dev, cuda_graph):
        opt = kiln.optim.SGD(lr=args.lr, momentum=0.9, weight_decay=1e-4)
        return kiln.Trainer(model, kiln.cross_entropy, opt, device=dev, cuda_graph=cuda_graph)

    def make_opt(params, fused):
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4, fused=fused)

    def batch(rng):
        return (rng.standard_normal((args.batch, 3, args.image, args.image), dtype=np.float32),
                rng.integers(0, args.classes, args.batch).astype(np.int64))

    batches = gpu_common.batches_from(batch, max(args.check_steps, 2), args.seed)
    results = gpu_common.run_all(systems, make_trainer, net, make_opt, F.cross_entropy, batches, args, device)
    gpu_common.report(results, args, device, args.batch, "images", flops)


if __name__ == "__main__":
    main()

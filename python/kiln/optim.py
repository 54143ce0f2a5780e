"""optim.py — optimizers and learning-rate schedules. An optimizer emits its update as IR ops
(while the Trainer traces the training step), so forward, backward and update are one function:
update(params, grads, state, lr, step) -> (new params, new state), with torch.optim's rules."""
import math

from . import ops


class Optimizer:
    """Base class: `slots` names the per-parameter state tensors (zeros at the start)."""

    slots = ()

    def __init__(self, lr, schedule=None, clip_grad_norm=None):
        self.lr = lr
        self.schedule = schedule
        self.clip_grad_norm = clip_grad_norm

    def lr_at(self, step):
        """The learning rate of step `step` (1-based)."""
        return float(self.schedule(step) if self.schedule is not None else self.lr)

    def clip(self, grads):
        """Scales all gradients by min(1, max_norm / (global L2 norm + 1e-6)) (torch's clip_grad_norm_)."""
        if self.clip_grad_norm is None:
            return grads
        total = None
        for g in grads:
            s = ops.sum(g * g).astype("float32")
            total = s if total is None else total + s
        scale = ops.minimum(float(self.clip_grad_norm) / (ops.sqrt(total) + 1e-6), 1.0)
        return [g * scale.astype(g.dtype) for g in grads]

    def update(self, params, grads, state, lr, step):
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, nesterov, weight decay."""

    def __init__(self, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, **kw):
        super().__init__(lr, **kw)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum, self.dampening, self.nesterov, self.weight_decay = momentum, dampening, nesterov, weight_decay
        self.slots = ("momentum_buffer",) if momentum else ()

    def update(self, params, grads, state, lr, step):
        new_p, new_s = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.weight_decay:
                g = g + p * self.weight_decay
            if self.momentum:
                buf = state[i][0]
                # torch starts the buffer at the first gradient: buf = g on step 1
                first = ops.cast(ops.equal(step, 1), p.dtype)
                buf = buf * self.momentum + g * (1.0 - self.dampening)
                buf = first * g + (1.0 - first) * buf
                g = g + buf * self.momentum if self.nesterov else buf
                new_s.append((buf,))
            else:
                new_s.append(())
            new_p.append(p - g * lr)
        return new_p, new_s


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient); AdamW decouples it."""

    slots = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kw):
        super().__init__(lr, **kw)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def update(self, params, grads, state, lr, step):
        b1, b2 = self.betas
        bc1 = 1.0 - ops.power(b1, step)
        bc2 = 1.0 - ops.power(b2, step)
        new_p, new_s = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = state[i]
            if self.weight_decay and self.decoupled:
                p = p * (1.0 - lr * self.weight_decay)
            elif self.weight_decay:
                g = g + p * self.weight_decay
            m = m * b1 + g * (1.0 - b1)
            v = v * b2 + g * g * (1.0 - b2)
            # torch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
            denom = ops.sqrt(v) / ops.sqrt(bc2) + self.eps
            new_p.append(p - (m / denom) * (lr / bc1))
            new_s.append((m, v))
        return new_p, new_s


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay (default 0.01)."""

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **kw):
        super().__init__(lr, betas, eps, weight_decay, **kw)


class LANS(Optimizer):
    """LANS (Zheng et al. 2020, "Accelerated Large Batch Optimization of BERT Pretraining in 54
    minutes", Algorithm 2): per-parameter normalised gradients, Adam moments, and two
    layer-wise trust-ratio steps (Nesterov-style) on the moment and the current gradient:
        g = grad / ||grad||;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
        r = m^ / (sqrt(v^) + eps) + wd x;   c = g / (sqrt(v^) + eps) + wd x
        x -= lr b1 (||x|| / ||r||) r + lr (1-b1) (||x|| / ||c||) c
    A trust ratio whose norms are zero is taken as 1 (as in LAMB implementations)."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, **kw):
        super().__init__(lr, **kw)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    @staticmethod
    def _trust(p_norm, u_norm):
        ok = ops.logical_and(ops.greater(p_norm, 0.0), ops.greater(u_norm, 0.0))
        return ops.where(ok, p_norm / ops.where(ok, u_norm, 1.0), 1.0)

    def update(self, params, grads, state, lr, step):
        b1, b2 = self.betas
        bc1 = 1.0 - ops.power(b1, step)
        bc2 = 1.0 - ops.power(b2, step)
        new_p, new_s = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = state[i]
            g_norm = ops.sqrt(ops.sum(g * g))
            g = g / ops.where(ops.greater(g_norm, 0.0), g_norm, 1.0)
            m = m * b1 + g * (1.0 - b1)
            v = v * b2 + g * g * (1.0 - b2)
            denom = ops.sqrt(v / bc2) + self.eps
            r = (m / bc1) / denom + p * self.weight_decay
            c = g / denom + p * self.weight_decay
            p_norm = ops.sqrt(ops.sum(p * p))
            r_ratio = self._trust(p_norm, ops.sqrt(ops.sum(r * r)))
            c_ratio = self._trust(p_norm, ops.sqrt(ops.sum(c * c)))
            new_p.append(p - r * (r_ratio * (lr * b1)) - c * (c_ratio * (lr * (1.0 - b1))))
            new_s.append((m, v))
        return new_p, new_s


def step_lr(lr, step_size, gamma=0.1):
    """lr * gamma ** ((step - 1) // step_size) (torch StepLR, counted in steps)."""
    return lambda step: lr * gamma ** ((step - 1) // step_size)


def cosine_with_warmup(lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warm-up from lr/warmup to lr over warmup_steps, then cosine decay to min_lr."""
    def schedule(step):
        if step <= warmup_steps:
            return lr * step / max(1, warmup_steps)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))
    return schedule

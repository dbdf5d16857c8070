"""Batched gradient descent on many depth-2 mean-field networks at once, backward pass by hand.

Model per network (x: one input row of width w):
    z = x W1 / sqrt(w)            W1: (w, w), init N(offset0, 1)
    z <- layernorm(z)             optional, no affine parameters
    a = act(z)                    tanh(sqrt(2) z) | relu(z) | z
    h = a (+ x if skip)
    out = h W2 / sqrt(w) / sqrt(w)    W2: (w,), init N(offset1, 1); mean-field readout
    loss = mean over samples of (out - y)^2
Update: p <- p - lr_layer * buf, buf = momentum * buf + grad (torch.optim.SGD convention).

Layout: activations of B networks live as (B, w, m) (hidden unit, sample) with samples contiguous.
When all pixels share X, the first layer of the whole chunk is ONE GEMM, (B*w, w) @ (w, m), and its
weight gradient another, (B*w, m) @ (m, w); per-pixel data uses batched GEMMs (bmm) instead.
tanh is evaluated as 2*sigmoid(2u) - 1, which is several times faster than torch.tanh on CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .problem import Problem, batch_order

_LN_EPS = 1e-5
_CHECK_EVERY = 8  # steps between looks for diverged networks to drop


@dataclass
class Spec:
    """Settings of the training loop (not of the grid)."""

    steps: int = 500
    activation: str = "tanh"
    norm: bool = False
    skip: bool = False
    momentum: float = 0.0
    order: np.ndarray | None = None  # (steps, batch) sample indices, None: full batch
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

    @classmethod
    def from_config(cls, cfg) -> "Spec":
        return cls(
            steps=cfg.steps,
            activation=cfg.activation,
            norm=cfg.norm,
            skip=cfg.skip,
            momentum=cfg.momentum,
            order=batch_order(cfg.n_samples, cfg.batch_size, cfg.steps, cfg.seed),
            dtype=getattr(torch, cfg.dtype),
            device=cfg.device,
        )


def matmul_flops_per_step(width: int, m: int) -> int:
    """FLOPs of the matmuls one network does per step on m samples (fwd layer 0, fwd readout,
    readout grad, layer-0 weight grad; the hidden grad is an outer product folded into elementwise work)."""
    return 2 * m * width * width * 2 + 2 * m * width * 2


def train(problem: Problem, lr0, lr1, offset0, offset1, spec: Spec, chunk: int = 1024) -> np.ndarray:
    """Train len(lr0) networks; return their loss trajectories, float64 array (B, steps).

    lr0/lr1/offset0/offset1 are per-network arrays of length B. With a per-pixel problem its
    leading axis must be B too. Entry t of a trajectory is the loss before update t.
    """
    lr0, lr1, offset0, offset1 = (np.broadcast_to(np.asarray(a, dtype=np.float64), np.shape(lr0)) for a in (lr0, lr1, offset0, offset1))
    B = lr0.shape[0]
    out = np.empty((B, spec.steps))
    for s in range(0, B, chunk):
        sl = slice(s, min(B, s + chunk))
        sub = problem
        if problem.per_pixel:
            sub = Problem(problem.X[sl], problem.y[sl], problem.W1[sl], problem.W2[sl])
        out[sl] = _train_chunk(sub, lr0[sl], lr1[sl], offset0[sl], offset1[sl], spec).cpu().double().numpy()
    return out


def _t(a, spec: Spec) -> torch.Tensor:
    # always a copy: the caller's arrays must never be aliased by tensors updated in place
    return torch.tensor(np.asarray(a), dtype=spec.dtype, device=spec.device)


@torch.no_grad()
def _train_chunk(pb: Problem, lr0, lr1, off0, off1, spec: Spec) -> torch.Tensor:
    B = len(lr0)
    shared = not pb.per_pixel
    w = pb.W1.shape[-1]
    dt, dev = spec.dtype, spec.device
    inv_sqrt_w = 1.0 / math.sqrt(w)
    act = spec.activation
    # tanh(sqrt(2) z) = 2 sigmoid(u) - 1 with u = 2 sqrt(2) z. The kernel keeps S = sigmoid(u) and
    # never forms the hidden activation: out = (2 W2.S - sum W2 [+ W2.x]) / w, and
    # d tanh(sqrt(2) z)/dz = sqrt(2) (1 - (2S - 1)^2) = 4 sqrt(2) S (1 - S).
    pre = 2.0 * math.sqrt(2.0) if act == "tanh" else 1.0
    c_out = 2.0 if act == "tanh" else 1.0  # hidden = c_out * kernel_value + shift
    dscale = 4.0 * math.sqrt(2.0) if act == "tanh" else 1.0
    fold = 1.0 if spec.norm else pre  # scale folded into the forward GEMM operand

    X = _t(pb.X, spec)  # (n, w) or (B, n, w)
    y = _t(pb.y, spec)  # (n,) or (B, n)
    # W1T[b] = W1[b]^T: rows are output units, so W1T.view(B*w, w) is the GEMM's left operand.
    W1T = _t(pb.W1, spec).transpose(-1, -2).expand(B, w, w).contiguous()
    W1T += _t(off0, spec).view(B, 1, 1)
    W2 = _t(pb.W2, spec).expand(B, w).contiguous()
    W2 += _t(off1, spec).view(B, 1)
    nlr0 = _t(-lr0, spec).view(B, 1, 1)
    nlr1 = _t(-lr1, spec).view(B, 1)
    mom = spec.momentum
    buf1 = torch.zeros_like(W1T) if mom else None
    buf2 = torch.zeros_like(W2) if mom else None

    # Networks whose loss is non-finite can never recover (their weights are inf/NaN from then on):
    # they are dropped from the batch and the rest of their trajectory reads +inf.
    losses = torch.full((B, spec.steps), math.inf, dtype=dt, device=dev)
    active = torch.arange(B, device=dev)
    order = None if spec.order is None else torch.as_tensor(spec.order, device=dev)
    Xs_full = X * inv_sqrt_w  # gradient operand (..., n, w)
    XfT_full = (X * (inv_sqrt_w * fold)).transpose(-1, -2).contiguous()  # forward operand (..., w, n)
    m = X.shape[-2] if order is None else order.shape[1]

    def buffers(B):
        # Reused every step: fresh multi-MB tensors per op would cost page faults on CPU.
        return (
            torch.empty(B, w, m, dtype=dt, device=dev),  # Z: pre-activation, then kernel value
            torch.empty(B, w, m, dtype=dt, device=dev),  # T: d loss / d pre-activation (unscaled)
            torch.empty(B, 1, m, dtype=dt, device=dev),
            torch.empty(B, w, w, dtype=dt, device=dev),
            torch.empty(B, w, dtype=dt, device=dev),
        )

    Z, T, out, gW1T, gW2 = buffers(B)
    for t in range(spec.steps):
        if t and t % _CHECK_EVERY == 0:
            keep = torch.isfinite(losses[active, t - 1])
            n_drop = B - int(keep.sum())
            if n_drop and n_drop * 8 >= B:
                sel = keep.nonzero().squeeze(1)
                active, W1T, W2, nlr0, nlr1 = active[sel], W1T[sel], W2[sel], nlr0[sel], nlr1[sel]
                if mom:
                    buf1, buf2 = buf1[sel], buf2[sel]
                if not shared:
                    X, y, Xs_full, XfT_full = X[sel], y[sel], Xs_full[sel], XfT_full[sel]
                B = len(sel)
                if B == 0:
                    break
                Z, T, out, gW1T, gW2 = buffers(B)
        if order is None:
            X_b, Xs, XfT, yb = X, Xs_full, XfT_full, y
        else:
            idx = order[t]
            X_b, Xs, yb = X.index_select(-2, idx), Xs_full.index_select(-2, idx), y.index_select(-1, idx)
            XfT = XfT_full.index_select(-1, idx)
        # forward, layer 0
        if shared:
            torch.mm(W1T.view(B * w, w), XfT, out=Z.view(B * w, m))
        else:
            torch.bmm(W1T, XfT, out=Z)
        if spec.norm:
            Z -= Z.mean(1, keepdim=True)
            rstd = torch.rsqrt(Z.pow(2).mean(1, keepdim=True).add_(_LN_EPS))
            Z *= rstd
            Zn = Z.clone()
            if pre != 1.0:
                Z *= pre
        if act == "tanh":
            torch.sigmoid_(Z)
        elif act == "relu":
            torch.relu_(Z)
        # readout
        torch.bmm(W2.unsqueeze(1), Z, out=out)
        o = out.squeeze(1)
        if c_out != 1.0:
            o.mul_(c_out).sub_(W2.sum(1, keepdim=True))
        if spec.skip:
            o += (W2 @ X_b.transpose(-1, -2)) if shared else torch.bmm(W2.unsqueeze(1), X_b.transpose(-1, -2)).squeeze(1)
        o.mul_(1.0 / w).sub_(yb)  # o is now the error out - y
        losses[active, t] = o.pow(2).mean(1)
        g = o.mul_(2.0 / m)  # d loss / d out, (B, m)
        # readout weight gradient: sum_s hidden * g / w
        torch.mul(Z, g.unsqueeze(1), out=T)
        torch.sum(T, 2, out=gW2)
        if c_out != 1.0:
            gW2.mul_(c_out).sub_(g.sum(1, keepdim=True))
        if spec.skip:
            gW2 += (g @ X_b) if shared else torch.bmm(g.unsqueeze(1), X_b).squeeze(1)
        gW2 *= 1.0 / w
        # T = g * d kernel / d pre-activation (the factor W2 * dscale / w comes later)
        if act == "tanh":
            T.addcmul_(Z, T, value=-1.0)  # S g - S^2 g
        elif act == "relu":
            torch.sign(Z, out=T).mul_(g.unsqueeze(1))
        # identity: T already holds Z * g; it must be g alone
        else:
            T.copy_(g.unsqueeze(1).expand(B, w, m))
        row_scale = W2 * (dscale / w)
        if spec.norm:
            # layer-norm backward (no affine): rstd * (d - mean(d) - zn * mean(d * zn))
            T *= row_scale.unsqueeze(2)
            T -= T.mean(1, keepdim=True)
            T -= Zn * (T * Zn).mean(1, keepdim=True)
            T *= rstd
        if shared:
            torch.mm(T.view(B * w, m), Xs, out=gW1T.view(B * w, w))
        else:
            torch.bmm(T, Xs, out=gW1T)
        if not spec.norm:
            gW1T *= row_scale.unsqueeze(2)
        if mom:
            buf1.mul_(mom).add_(gW1T)
            buf2.mul_(mom).add_(gW2)
            W1T.addcmul_(nlr0, buf1)
            W2.addcmul_(nlr1, buf2)
        else:
            W1T.addcmul_(nlr0, gW1T)
            W2.addcmul_(nlr1, gW2)
    return losses


def reference_train(X, y, W1, W2, lr0, lr1, steps, activation="tanh", norm=False, skip=False,
                    momentum=0.0, order=None, dtype=torch.float64) -> np.ndarray:
    """One network with autograd and torch.optim.SGD: the plain baseline and the test oracle.

    W1, W2 are the initial weights including any offset. Returns the loss trajectory (steps,).
    """
    X, y = torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)
    p1 = torch.tensor(W1, dtype=dtype, requires_grad=True)
    p2 = torch.tensor(W2, dtype=dtype, requires_grad=True)
    w = p1.shape[0]
    opt = torch.optim.SGD([{"params": [p1], "lr": float(lr0)}, {"params": [p2], "lr": float(lr1)}], momentum=momentum)
    act = {"tanh": lambda z: torch.tanh(math.sqrt(2.0) * z), "relu": torch.relu, "identity": lambda z: z}[activation]
    traj = []
    for t in range(steps):
        xb, yb = (X, y) if order is None else (X[order[t]], y[order[t]])
        z = xb @ p1 / math.sqrt(w)
        if norm:
            z = torch.nn.functional.layer_norm(z, (w,), eps=_LN_EPS)
        h = act(z)
        if skip:
            h = h + xb
        out = h @ p2 / math.sqrt(w) / math.sqrt(w)
        loss = ((out - yb) ** 2).mean()
        traj.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(traj)

"""Plain PyTorch references (materialised logits) for the parity tests."""
import torch
import torch.nn.functional as F


def _direction(logits, la, lb, eps, reduction):
    n, m = logits.shape
    if la is None:
        q0 = torch.eye(n, m, dtype=logits.dtype)
        valid = torch.ones(n, dtype=torch.bool)
    else:
        mask = (la[:, None] == lb[None, :]).to(logits.dtype)
        cnt = mask.sum(1)
        valid = cnt > 0
        q0 = mask / cnt.clamp(min=1)[:, None]
    q = (1 - eps) * q0 + eps / m
    l = torch.logsumexp(logits, 1) - (q * logits).sum(1)
    l = l[valid]
    if reduction == "sum":
        return l.sum()
    return l.mean() if l.numel() else logits.sum() * 0


def info_nce(a, b, scale, la=None, lb=None, eps=0.0, symmetric=False, reduction="mean"):
    logits = scale * a @ b.T
    row = _direction(logits, la, lb, eps, reduction)
    if not symmetric:
        return row
    col = _direction(logits.T, lb, la, eps, reduction)
    return (row + col) / 2


def clip_cross_entropy(a, b, scale, label_smoothing=0.0):
    """open_clip's ClipLoss: mm + F.cross_entropy both ways, averaged."""
    logits = scale * a @ b.T
    t = torch.arange(a.shape[0])
    return (F.cross_entropy(logits, t, label_smoothing=label_smoothing) +
            F.cross_entropy(logits.T, t, label_smoothing=label_smoothing)) / 2


def nt_xent(a, b, scale, labels=None, eps=0.0, reduction="mean"):
    n = a.shape[0]
    z = torch.cat([a, b])
    s = scale * z @ z.T
    eye = torch.eye(2 * n, dtype=torch.bool)
    s_masked = s.masked_fill(eye, float("-inf"))
    y = torch.arange(n) if labels is None else labels
    yy = torch.cat([y, y])
    pos = (yy[:, None] == yy[None, :]) & ~eye
    q0 = pos.to(s.dtype) / pos.sum(1, keepdim=True).to(s.dtype)
    q = (1 - eps) * q0 + (eps / (2 * n - 1)) * (~eye).to(s.dtype)
    s_safe = s.masked_fill(eye, 0.0)
    l = torch.logsumexp(s_masked, 1) - (q * s_safe).sum(1)
    return l.sum() if reduction == "sum" else l.mean()


def nt_xent_cross_entropy(a, b, scale):
    """SimCLR's usual code: self-similarity masked, cross-entropy on the other view."""
    n = a.shape[0]
    z = torch.cat([a, b])
    s = (scale * z @ z.T).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    t = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(s, t)

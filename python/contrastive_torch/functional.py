"""Loss functions of contrastive_torch (autograd-enabled; CPU, and CUDA where built).

Inputs are used as given: normalise embeddings first (``F.normalize``) when the loss expects unit
vectors. Losses are float32 for float32 / float16 / bfloat16 inputs (float64 for float64);
gradients come back in each input's dtype. Bad input (shapes, dtypes, devices, non-finite values,
options) raises ValueError with the library's message.
"""
import math
import numbers

import torch

from . import _ops

__all__ = ["clip_loss", "info_nce_loss", "nt_xent_loss"]

_REDUCTIONS = {"mean": 0, "sum": 1}


def _reduction(reduction):
    try:
        return _REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}") from None


def _labels(labels, name):
    if labels is None:
        return None
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}")
    return labels


def _scaled(a, b, logit_scale, temperature, quadratic=False):
    """Applies the logit scale: a tensor multiplies the inputs (so autograd reaches it and no host
    sync happens) and the library runs at temperature 1; a number sets the temperature."""
    if logit_scale is None:
        return a, b, float(temperature)
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must hold one value, got shape {tuple(logit_scale.shape)}")
        s = logit_scale.reshape(())
        if s.device != a.device and s.device.type == "cpu":
            s = s.to(a.device)
        if quadratic:  # NT-Xent: S = Z Z^T, so each factor carries sqrt(scale)
            s = s.sqrt()
            return a * s, b * s, 1.0
        return a * s, b, 1.0
    if isinstance(logit_scale, numbers.Real):
        s = float(logit_scale)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"logit_scale must be positive and finite, got {s}")
        return a, b, 1.0 / s
    raise ValueError(f"logit_scale must be a tensor, a number or None, got {type(logit_scale)}")


def _check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def info_nce_loss(query, key, temperature=0.07, *, logit_scale=None, labels=None,
                  key_labels=None, label_smoothing=0.0, reduction="mean", symmetric=False):
    """InfoNCE of ``query`` (N x D) against ``key`` (N x D): row i's positive is key i, or, with
    ``labels`` (and ``key_labels``, default ``labels``), every key with the same label.
    ``symmetric=True`` is the CLIP loss. Logits are <q_i, k_j> / temperature, or <q_i, k_j> *
    logit_scale when ``logit_scale`` is given (a tensor is learnable)."""
    _check_tensor(query, "query")
    _check_tensor(key, "key")
    la = _labels(labels, "labels")
    lb = _labels(key_labels, "key_labels") if key_labels is not None else la
    if (la is None) != (lb is None):
        raise ValueError("give labels for both sides or for neither")
    a, b, t = _scaled(query, key, logit_scale, temperature)
    out = _ops.call("info_nce_fwd", a, b, la, lb, t, float(label_smoothing), bool(symmetric),
                    _reduction(reduction))
    return out[0]


def clip_loss(image_features, text_features, logit_scale=None, *, labels=None,
              label_smoothing=0.0, reduction="mean"):
    """Symmetric CLIP loss: the mean of the image->text and text->image cross-entropies of
    logits = logit_scale * image_features @ text_features.T (open_clip's ClipLoss;
    ``logit_scale`` already exponentiated: a tensor, which may require grad, a number, or None
    for 1). ``labels`` (one int per row, or a pair for the two towers) gives multiple positives."""
    _check_tensor(image_features, "image_features")
    _check_tensor(text_features, "text_features")
    if isinstance(labels, (tuple, list)) and len(labels) == 2 and not isinstance(labels[0], numbers.Number):
        la, lb = _labels(labels[0], "labels[0]"), _labels(labels[1], "labels[1]")
    else:
        la = lb = _labels(labels, "labels")
    a, b, t = _scaled(image_features, text_features, logit_scale, 1.0)
    out = _ops.call("info_nce_fwd", a, b, la, lb, t, float(label_smoothing), True,
                    _reduction(reduction))
    return out[0]


def nt_xent_loss(a, b, temperature=0.1, *, logit_scale=None, labels=None, label_smoothing=0.0,
                 reduction="mean"):
    """NT-Xent (SimCLR): rows i of ``a`` and ``b`` are two views of sample i; each of the 2N rows
    of [a; b] is contrasted with the other 2N - 1 (logits <z_i, z_j> / temperature, or times
    ``logit_scale``). ``labels`` (N ints) gives multiple positives (SupCon)."""
    _check_tensor(a, "a")
    _check_tensor(b, "b")
    lab = _labels(labels, "labels")
    a2, b2, t = _scaled(a, b, logit_scale, temperature, quadratic=True)
    out = _ops.call("nt_xent_fwd", a2, b2, lab, t, float(label_smoothing), _reduction(reduction))
    return out[0]

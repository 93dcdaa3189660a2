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

__all__ = ["clip_loss", "info_nce_loss", "nt_xent_loss", "gamma_nce_loss", "feature_separation_loss",
           "brownian_bridge_loss", "brownian_bridge_sample", "geometric_consistency_loss"]

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


def _cuda_kernels():
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("contrastive::info_nce_fwd", "CUDA")
    except (AttributeError, RuntimeError):
        return True  # cannot tell: let the dispatcher decide


# Known at import (a constant for torch.compile): were the CUDA kernels built?
HAS_CUDA_KERNELS = _cuda_kernels()


def _check_devices(fn, named, cpu_only=False):
    """All inputs on one device, of a kind the ops support (ValueError otherwise)."""
    first_name, first = named[0]
    dev = first.device
    for name, x in named[1:]:
        if x is not None and x.device != dev:
            raise ValueError(f"{fn}: '{name}' is on {x.device} but '{first_name}' is on {dev} "
                             "(all inputs must be on one device)")
    if dev.type == "cuda":
        if cpu_only:
            raise ValueError(f"{fn}: CUDA tensors are not supported (this loss runs on the CPU); "
                             "move the inputs to the CPU")
        if not HAS_CUDA_KERNELS:
            raise ValueError(f"{fn}: contrastive_torch was built without its CUDA kernels "
                             "(rebuild with a CUDA torch and a matching nvcc)")
    elif dev.type != "cpu":
        raise ValueError(f"{fn}: tensors on {dev} are not supported (CPU or CUDA)")


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
    _check_devices("info_nce_loss", [("query", query), ("key", key)])
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
    _check_devices("clip_loss", [("image_features", image_features), ("text_features", text_features)])
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
    _check_devices("nt_xent_loss", [("a", a), ("b", b)])
    a2, b2, t = _scaled(a, b, logit_scale, temperature, quadratic=True)
    out = _ops.call("nt_xent_fwd", a2, b2, lab, t, float(label_smoothing), _reduction(reduction))
    return out[0]


# ---- The gamma-auxiliary loss --------------------------------------------------------------------

_RATE_SOURCES = {"state": 0, "same_batch": 1, "exact": 2}
_ORDERS = {"update_then_sample": False, "sample_then_update": True}


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                           for t in tensors)


def gamma_nce_loss(a, b, ids, state=None, *, temperature=0.07, logit_scale=None, symmetric=True,
                   alpha=1.0, beta=0.9, seed=0, step=0, rate_source="state",
                   order="update_then_sample", positive_in_normaliser=False,
                   exact_log_normalizer=None, reduction="mean", return_details=False):
    """The gamma-auxiliary decomposable loss (Chen et al., NeurIPS 2022; docs/gamma_nce.md):
    the surrogate -s_ii + r_i with r_i = (g_i/alpha) Zhat_i / Zbar_i, g_i ~ Gamma(alpha, 1) keyed
    by (seed, ids, step). ``ids`` are the rows' dataset ids; ``state`` a :class:`NormalizerState`
    whose moving averages this call updates (rate_source "state"). ``alpha=math.inf`` is the
    deterministic (SogCLR) weight. With ``return_details`` returns (loss, {"info_nce": batch
    InfoNCE / CLIP value, "rate_loss": ...}) for monitoring."""
    _check_tensor(a, "a")
    _check_tensor(b, "b")
    try:
        rs = _RATE_SOURCES[rate_source]
        stu = _ORDERS[order]
    except KeyError:
        raise ValueError(f"rate_source must be one of {list(_RATE_SOURCES)} and order one of "
                         f"{list(_ORDERS)}, got {rate_source!r}, {order!r}") from None
    _check_devices("gamma_nce_loss", [("a", a), ("b", b)], cpu_only=True)
    ids_t = _labels(ids, "ids")
    if ids_t is None:
        raise ValueError("ids (one dataset id per row) are required")
    zeta = visited = None
    if rs == 0:
        if state is None:
            raise ValueError("rate_source 'state' needs a NormalizerState")
        zeta, visited = state.zeta, state.visited
    ea = eb = None
    if exact_log_normalizer is not None:
        if isinstance(exact_log_normalizer, (tuple, list)):
            ea, eb = exact_log_normalizer
        else:
            ea = exact_log_normalizer
        ea = None if ea is None else torch.as_tensor(ea, dtype=torch.float64)
        eb = None if eb is None else torch.as_tensor(eb, dtype=torch.float64)
    a2, b2, t = _scaled(a, b, logit_scale, temperature)
    out = _ops.call("gamma_nce_fwd", a2, b2, ids_t, zeta, visited, t, bool(symmetric),
                    float(alpha), float(beta), int(seed), int(step), rs, stu,
                    bool(positive_in_normaliser), ea, eb, _reduction(reduction))
    if rs == 0:
        state._write_back(ids_t, out[7])
    if return_details:
        return out[0], {"info_nce": out[1].detach(), "rate_loss": out[2].detach()}
    return out[0]


# ---- Modality-structure regularisers (Jiang et al., CVPR 2023) ---------------------------------

def feature_separation_loss(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, *, temperature=0.07,
                            orthogonality_weight=1.0, contrastive_weight=1.0,
                            uniformity_weight=1.0, uniformity_t=2.0, uniformity="literal"):
    """Deep feature separation L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni
    (docs/feature_separation.md): ``a``/``b`` the image/text embeddings, ``*_ind`` the
    independent heads' features and ``*_ind_aug`` those of the augmented views (N x D each)."""
    for x, nm in ((a, "a"), (b, "b"), (a_ind, "a_ind"), (b_ind, "b_ind"), (a_ind_aug, "a_ind_aug"),
                  (b_ind_aug, "b_ind_aug")):
        _check_tensor(x, nm)
    if uniformity not in ("literal", "wang_isola"):
        raise ValueError(f"uniformity must be 'literal' or 'wang_isola', got {uniformity!r}")
    _check_devices("feature_separation_loss", [("a", a), ("b", b), ("a_ind", a_ind), ("b_ind", b_ind),
                                               ("a_ind_aug", a_ind_aug), ("b_ind_aug", b_ind_aug)],
                   cpu_only=True)
    wg = _needs_grad(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug)
    out = _ops.call("feature_separation_fwd", a, b, a_ind, b_ind, a_ind_aug, b_ind_aug,
                    float(orthogonality_weight), float(contrastive_weight),
                    float(uniformity_weight), float(temperature), float(uniformity_t),
                    uniformity == "wang_isola", wg)
    return out[0]


def _bridge_args(t, random_t, t_range, seed, step, first_id, ids):
    lo, hi = t_range
    return (float(t), bool(random_t), float(lo), float(hi), int(seed), int(step), int(first_id),
            _labels(ids, "ids"))


def brownian_bridge_loss(a, b, a_aug, *, t=0.25, random_t=False, t_range=(0.05, 0.95), seed=0,
                         step=0, first_id=0, ids=None, nll_weight=False, detach_a_aug=False):
    """L_Br = (1/N) sum_j ||a_aug_j - mu_j||^2 with mu(a, b, t) on the normalised bridge from
    b (t = 0) to a (t = 1) (docs/brownian_bridge.md)."""
    for x, nm in ((a, "a"), (b, "b"), (a_aug, "a_aug")):
        _check_tensor(x, nm)
    _check_devices("brownian_bridge_loss", [("a", a), ("b", b), ("a_aug", a_aug)], cpu_only=True)
    wg = _needs_grad(a, b, a_aug)
    t_, rt, lo, hi, sd, st, fi, ids_t = _bridge_args(t, random_t, t_range, seed, step, first_id, ids)
    out = _ops.call("brownian_bridge_loss_fwd", a, b, a_aug, t_, rt, lo, hi, sd, st, fi, ids_t,
                    bool(nll_weight), bool(detach_a_aug), wg)
    return out[0]


def brownian_bridge_sample(a, b, t=0.25, *, steps=0, noise=True, sigma=0.0, reproject=False,
                           random_t=False, t_range=(0.05, 0.95), seed=0, step=0, first_id=0,
                           ids=None, eps=None):
    """Samples the Brownian bridge between b (t = 0) and a (t = 1), differentiably in a and b:
    one point per pair (N x D), or with ``steps=K`` a K-step trajectory per pair (N x (K+1) x D).
    Noise from the Philox stream keyed by (seed, id, step), or the caller's ``eps`` (N x D for
    points, N (K-1) x D for trajectories); ``sigma=0`` means 1/sqrt(D)."""
    _check_tensor(a, "a")
    _check_tensor(b, "b")
    _check_devices("brownian_bridge_sample", [("a", a), ("b", b), ("eps", eps)], cpu_only=True)
    t_, rt, lo, hi, sd, st, fi, ids_t = _bridge_args(t, random_t, t_range, seed, step, first_id, ids)
    k = int(steps)
    y = _ops.call("brownian_bridge_sample_fwd", a, b, eps, k, t_, rt, lo, hi, bool(noise),
                  float(sigma), bool(reproject), sd, st, fi, ids_t)
    if k > 0:
        return y.reshape(a.shape[0], k + 1, a.shape[1])
    return y


def geometric_consistency_loss(a, b, a_aug=None, b_aug=None, *, cross_modal_weight=1.0,
                               in_modal_weight=1.0, detach_a_aug=False, detach_b_aug=False):
    """Geometric consistency (docs/geometric_consistency.md): L_GC of the pairs (a, b), or, with
    ``a_aug`` and ``b_aug``, the augmented variant L^a_GC."""
    _check_tensor(a, "a")
    _check_tensor(b, "b")
    _check_devices("geometric_consistency_loss", [("a", a), ("b", b), ("a_aug", a_aug), ("b_aug", b_aug)],
                   cpu_only=True)
    wg = _needs_grad(a, b, a_aug, b_aug)
    out = _ops.call("geometric_consistency_fwd", a, b, a_aug, b_aug, float(cross_modal_weight),
                    float(in_modal_weight), bool(detach_a_aug), bool(detach_b_aug), wg)
    return out[0]

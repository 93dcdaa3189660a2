"""Autograd for the plain C++ ops, registered by torch version.

torch >= 2.4: ``torch.library.register_fake`` and ``torch.library.register_autograd`` on the ops
themselves, so that ``torch.compile(fullgraph=True)`` and ``torch.library.opcheck`` work. Older
torch: a ``torch.autograd.Function`` per op with the same backward body.
"""
import torch
from torch.autograd.function import once_differentiable

from . import _loader

_loader.load()
_ops = torch.ops.contrastive


def _version():
    parts = []
    for p in torch.__version__.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


NEW_API = _version() >= (2, 4) and hasattr(torch.library, "register_autograd")


def _mark_statistics(ctx, output):
    """Outputs past the loss are statistics or saved gradients: not differentiable (torch >= 2.4;
    older torch marks them in the Function's forward)."""
    if NEW_API:
        ctx.mark_non_differentiable(*output[1:])


def _stat_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---- InfoNCE / CLIP --------------------------------------------------------------------------

def _info_nce_setup(ctx, inputs, output):
    a, b, labels_a, labels_b, temperature, label_smoothing, symmetric, reduction = inputs
    _, row_lse, col_lse, row_pos, col_pos = output
    ctx.save_for_backward(a, b, row_lse, col_lse, row_pos, col_pos, labels_a, labels_b)
    ctx.args = (temperature, label_smoothing, symmetric, reduction)
    _mark_statistics(ctx, output)


def _info_nce_backward(ctx, grad_loss, *unused):
    a, b, row_lse, col_lse, row_pos, col_pos, labels_a, labels_b = ctx.saved_tensors
    ga, gb = _ops.info_nce_bwd(grad_loss, a, b, row_lse, col_lse, row_pos, col_pos, labels_a,
                               labels_b, *ctx.args)
    return ga, gb, None, None, None, None, None, None


def _info_nce_fake(a, b, labels_a, labels_b, temperature, label_smoothing, symmetric, reduction):
    n = a.shape[0]
    st = _stat_dtype(a)
    labelled = labels_a is not None
    return (a.new_empty((), dtype=st), a.new_empty((n,), dtype=st),
            a.new_empty((n if symmetric else 0,), dtype=st),
            a.new_empty((n if labelled else 0,), dtype=torch.int64),
            a.new_empty((n if labelled and symmetric else 0,), dtype=torch.int64))


def _pair_bwd_fake(grad, a, b, *rest):
    return a.new_empty(a.shape), b.new_empty(b.shape)  # the kernels return contiguous gradients


# ---- NT-Xent ---------------------------------------------------------------------------------

def _nt_xent_setup(ctx, inputs, output):
    a, b, labels, temperature, label_smoothing, reduction = inputs
    _, lse, pos = output
    ctx.save_for_backward(a, b, lse, pos, labels)
    ctx.args = (temperature, label_smoothing, reduction)
    _mark_statistics(ctx, output)


def _nt_xent_backward(ctx, grad_loss, *unused):
    a, b, lse, pos, labels = ctx.saved_tensors
    ga, gb = _ops.nt_xent_bwd(grad_loss, a, b, lse, pos, labels, *ctx.args)
    return ga, gb, None, None, None, None


def _nt_xent_fake(a, b, labels, temperature, label_smoothing, reduction):
    n = a.shape[0]
    st = _stat_dtype(a)
    return (a.new_empty((), dtype=st), a.new_empty((2 * n,), dtype=st),
            a.new_empty((2 * n if labels is not None else 0,), dtype=torch.int64))


# ---- The gamma loss --------------------------------------------------------------------------

def _gamma_setup(ctx, inputs, output):
    a, b = inputs[0], inputs[1]
    temperature, symmetric, pin, reduction = inputs[5], inputs[6], inputs[13], inputs[16]
    ctx.save_for_backward(a, b, output[3], output[4], output[5], output[6])
    ctx.args = (temperature, symmetric, pin, reduction)
    _mark_statistics(ctx, output)


def _gamma_backward(ctx, grad_loss, *unused):
    a, b, row_lse, row_r, col_lse, col_r = ctx.saved_tensors
    ga, gb = _ops.gamma_nce_bwd(grad_loss, a, b, row_lse, row_r, col_lse, col_r, *ctx.args)
    return (ga, gb) + (None,) * 15


def _gamma_fake(a, b, ids, zeta, visited, temperature, symmetric, alpha, beta, seed, step,
                rate_source, sample_then_update, positive_in_normaliser, exact_a, exact_b,
                reduction):
    n = a.shape[0]
    st = _stat_dtype(a)
    m = n if symmetric else 0
    dirs = zeta.shape[0] if (rate_source == 0 and zeta is not None) else 0
    return (a.new_empty((), dtype=st), a.new_empty((), dtype=st), a.new_empty((), dtype=st),
            a.new_empty((n,), dtype=st), a.new_empty((n,), dtype=torch.float64),
            a.new_empty((m,), dtype=st), a.new_empty((m,), dtype=torch.float64),
            a.new_empty((dirs, n), dtype=torch.float64))


# ---- Fused losses: the forward returns the gradients, the backward scales them ------------------

def _fused(n_inputs, n_args):
    """setup / backward / fake helpers for an op (inputs..., args..., with_grad) -> (loss, grads...)."""

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*output[1:])
        _mark_statistics(ctx, output)

    def backward(ctx, grad_loss, *unused):
        grads = []
        for g in ctx.saved_tensors:
            grads.append(g * grad_loss.to(g.dtype) if g.numel() else None)
        return tuple(grads) + (None,) * (n_args + 1)

    return setup, backward


def _fused_fake(inputs, with_grad, loss_like):
    loss = loss_like.new_empty((), dtype=_stat_dtype(loss_like))
    grads = tuple(x.new_empty(x.shape) if (with_grad and x is not None) else loss_like.new_empty((0,))
                  for x in inputs)
    return (loss,) + grads


def _fs_fake(a, b, ai, bi, aia, bia, wo, wc, wu, temperature, ut, wang_isola, with_grad):
    return _fused_fake((a, b, ai, bi, aia, bia), with_grad, a)


def _bridge_loss_fake(a, b, a_aug, t, random_t, t_min, t_max, seed, step, first_id, ids,
                      nll_weight, detach_a_aug, with_grad):
    return _fused_fake((a, b, a_aug), with_grad, a)


def _gc_fake(a, b, a_aug, b_aug, wx, wi, da, db, with_grad):
    return _fused_fake((a, b, a_aug, b_aug), with_grad, a)


_fs_setup, _fs_backward = _fused(6, 6)
_bridge_loss_setup, _bridge_loss_backward = _fused(3, 10)
_gc_setup, _gc_backward = _fused(4, 4)


# ---- Bridge sampler ----------------------------------------------------------------------------

def _sample_setup(ctx, inputs, output):
    a, b, noise = inputs[0], inputs[1], inputs[2]
    ids = inputs[14]
    ctx.save_for_backward(a, b, noise, ids)
    ctx.args = inputs[3:14]


def _sample_backward(ctx, grad_y):
    a, b, noise, ids = ctx.saved_tensors
    ga, gb = _ops.brownian_bridge_sample_bwd(grad_y.contiguous(), a, b, noise, *ctx.args, ids)
    return (ga, gb) + (None,) * 13


def _sample_fake(a, b, noise, steps, *rest):
    rows = a.shape[0] * (steps + 1) if steps > 0 else a.shape[0]
    return a.new_empty((rows, a.shape[1]))


# ---- Registration ----------------------------------------------------------------------------

_TABLE = {
    # op name: (setup_context, backward, forward fake, backward op, backward fake)
    "info_nce_fwd": (_info_nce_setup, _info_nce_backward, _info_nce_fake, "info_nce_bwd",
                     _pair_bwd_fake),
    "nt_xent_fwd": (_nt_xent_setup, _nt_xent_backward, _nt_xent_fake, "nt_xent_bwd",
                    _pair_bwd_fake),
    "gamma_nce_fwd": (_gamma_setup, _gamma_backward, _gamma_fake, "gamma_nce_bwd", _pair_bwd_fake),
    "feature_separation_fwd": (_fs_setup, _fs_backward, _fs_fake, None, None),
    "brownian_bridge_loss_fwd": (_bridge_loss_setup, _bridge_loss_backward, _bridge_loss_fake,
                                 None, None),
    "geometric_consistency_fwd": (_gc_setup, _gc_backward, _gc_fake, None, None),
    "brownian_bridge_sample_fwd": (_sample_setup, _sample_backward, _sample_fake,
                                   "brownian_bridge_sample_bwd", _pair_bwd_fake),
}

# Outputs that are statistics, not functions of the inputs to differentiate (older torch marks
# them non-differentiable; the sampler's single output is differentiable).
_SINGLE_OUTPUT = {"brownian_bridge_sample_fwd"}

_functions = {}


def _make_function(name, setup, backward):
    op = getattr(_ops, name)

    def forward(ctx, *args):
        out = op(*args)
        setup(ctx, args, out)
        if name in _SINGLE_OUTPUT:
            return out
        ctx.mark_non_differentiable(*out[1:])
        return tuple(out)

    # First derivatives only: a second backward raises instead of returning wrong values.
    return type("_" + name, (torch.autograd.Function,),
                {"forward": staticmethod(forward),
                 "backward": staticmethod(once_differentiable(backward))})


for _name, (_setup, _bwd, _fake, _bwd_name, _bwd_fake) in _TABLE.items():
    if NEW_API:
        torch.library.register_fake("contrastive::" + _name)(_fake)
        if _bwd_name is not None:
            torch.library.register_fake("contrastive::" + _bwd_name)(_bwd_fake)
        torch.library.register_autograd("contrastive::" + _name, _bwd, setup_context=_setup)
    else:
        _functions[_name] = _make_function(_name, _setup, _bwd)


def call(name, *args):
    """Calls forward op `name` with autograd; returns the op's output tuple."""
    if NEW_API:
        return getattr(_ops, name)(*args)
    return _functions[name].apply(*args)

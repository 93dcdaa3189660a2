"""Autograd for the plain C++ ops, registered by torch version.

torch >= 2.4: ``torch.library.register_fake`` and ``torch.library.register_autograd`` on the ops
themselves, so that ``torch.compile(fullgraph=True)`` and ``torch.library.opcheck`` work. Older
torch: a ``torch.autograd.Function`` per op with the same backward body.
"""
import torch

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


def _stat_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---- InfoNCE / CLIP --------------------------------------------------------------------------

def _info_nce_setup(ctx, inputs, output):
    a, b, labels_a, labels_b, temperature, label_smoothing, symmetric, reduction = inputs
    _, row_lse, col_lse, row_pos, col_pos = output
    ctx.save_for_backward(a, b, row_lse, col_lse, row_pos, col_pos, labels_a, labels_b)
    ctx.args = (temperature, label_smoothing, symmetric, reduction)


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
    return torch.empty_like(a), torch.empty_like(b)


# ---- NT-Xent ---------------------------------------------------------------------------------

def _nt_xent_setup(ctx, inputs, output):
    a, b, labels, temperature, label_smoothing, reduction = inputs
    _, lse, pos = output
    ctx.save_for_backward(a, b, lse, pos, labels)
    ctx.args = (temperature, label_smoothing, reduction)


def _nt_xent_backward(ctx, grad_loss, *unused):
    a, b, lse, pos, labels = ctx.saved_tensors
    ga, gb = _ops.nt_xent_bwd(grad_loss, a, b, lse, pos, labels, *ctx.args)
    return ga, gb, None, None, None, None


def _nt_xent_fake(a, b, labels, temperature, label_smoothing, reduction):
    n = a.shape[0]
    st = _stat_dtype(a)
    return (a.new_empty((), dtype=st), a.new_empty((2 * n,), dtype=st),
            a.new_empty((2 * n if labels is not None else 0,), dtype=torch.int64))


# ---- Registration ----------------------------------------------------------------------------

_TABLE = {
    # op name: (setup_context, backward, forward fake, backward op, backward fake)
    "info_nce_fwd": (_info_nce_setup, _info_nce_backward, _info_nce_fake, "info_nce_bwd",
                     _pair_bwd_fake),
    "nt_xent_fwd": (_nt_xent_setup, _nt_xent_backward, _nt_xent_fake, "nt_xent_bwd",
                    _pair_bwd_fake),
}

_functions = {}


def _make_function(name, setup, backward):
    op = getattr(_ops, name)

    def forward(ctx, *args):
        out = op(*args)
        setup(ctx, args, out)
        ctx.mark_non_differentiable(*out[1:])
        return tuple(out)

    return type("_" + name, (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


for _name, (_setup, _bwd, _fake, _bwd_name, _bwd_fake) in _TABLE.items():
    if NEW_API:
        torch.library.register_fake("contrastive::" + _name)(_fake)
        torch.library.register_fake("contrastive::" + _bwd_name)(_bwd_fake)
        torch.library.register_autograd("contrastive::" + _name, _bwd, setup_context=_setup)
    else:
        _functions[_name] = _make_function(_name, _setup, _bwd)


def call(name, *args):
    """Calls forward op `name` with autograd; returns the op's output tuple."""
    if NEW_API:
        return getattr(_ops, name)(*args)
    return _functions[name].apply(*args)

import os

import torch

import contrastive_torch as ct


def test_loaded_library():
    """The module under test is the one the build asked for (CMake sets the variable)."""
    want = os.environ.get("CONTRASTIVE_TORCH_LIBRARY")
    assert os.path.isfile(ct.library_path)
    if want:
        assert os.path.samefile(ct.library_path, want)
    for op in ("info_nce_fwd", "info_nce_bwd", "nt_xent_fwd", "nt_xent_bwd"):
        assert hasattr(torch.ops.contrastive, op)


def _meta_list(out):
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [(tuple(t.shape), t.dtype, t.device.type) for t in out]


def _fake_cases():
    from contrastive_torch import _ops as P
    a64 = torch.randn(5, 3, dtype=torch.float64)
    bf = torch.randn(5, 3).to(torch.bfloat16)
    lab = torch.tensor([0, 1, 0, 2, 2])
    ids = torch.arange(5)
    z, v = torch.zeros(2, 9, dtype=torch.float64), torch.zeros(2, 9, dtype=torch.bool)
    cases = []
    for x in (a64, bf):
        cases += [
            ("info_nce_fwd", P._info_nce_fake, (x, x, None, None, 0.5, 0.0, True, 0)),
            ("info_nce_fwd", P._info_nce_fake, (x, x, lab, lab, 0.5, 0.1, False, 1)),
            ("info_nce_fwd", P._info_nce_fake, (x, x, lab, lab, 0.5, 0.1, True, 0)),
            ("nt_xent_fwd", P._nt_xent_fake, (x, x, None, 0.5, 0.0, 0)),
            ("nt_xent_fwd", P._nt_xent_fake, (x, x, lab, 0.5, 0.0, 0)),
            ("gamma_nce_fwd", P._gamma_fake, (x, x, ids, z, v, 0.5, True, 2.0, 0.9, 1, 0, 0, False, False, None, None, 0)),
            ("gamma_nce_fwd", P._gamma_fake, (x, x, ids, None, None, 0.5, False, 2.0, 0.9, 1, 0, 1, False, False, None, None, 0)),
            ("feature_separation_fwd", P._fs_fake, (x,) * 6 + (1.0, 1.0, 1.0, 0.5, 2.0, False, True)),
            ("feature_separation_fwd", P._fs_fake, (x,) * 6 + (1.0, 1.0, 1.0, 0.5, 2.0, True, False)),
            ("brownian_bridge_loss_fwd", P._bridge_loss_fake, (x,) * 3 + (0.25, False, 0.05, 0.95, 0, 0, 0, None, False, False, True)),
            ("brownian_bridge_loss_fwd", P._bridge_loss_fake, (x,) * 3 + (0.25, True, 0.05, 0.95, 0, 0, 0, ids, True, True, False)),
            ("geometric_consistency_fwd", P._gc_fake, (x, x, None, None, 1.0, 1.0, False, False, True)),
            ("geometric_consistency_fwd", P._gc_fake, (x, x, x, x, 1.0, 1.0, False, True, True)),
            ("geometric_consistency_fwd", P._gc_fake, (x, x, x, x, 1.0, 1.0, False, False, False)),
            ("brownian_bridge_sample_fwd", P._sample_fake, (x, x, None, 0, 0.25, False, 0.05, 0.95, True, 0.0, False, 1, 0, 0, None)),
            ("brownian_bridge_sample_fwd", P._sample_fake, (x, x, None, 3, 0.25, False, 0.05, 0.95, True, 0.0, True, 1, 0, 0, ids)),
        ]
    return cases


def test_fake_kernels_match_real_outputs():
    """The fake (meta) kernels registered on torch >= 2.4 describe the real outputs exactly
    (shapes, dtypes, devices); checked here on any torch by calling both."""
    for name, fake, args in _fake_cases():
        real = getattr(torch.ops.contrastive, name)(*args)
        assert _meta_list(fake(*args)) == _meta_list(real), name


def test_double_backward_is_refused():
    """The ops give first derivatives only; create_graph must not silently return wrong values."""
    import contrastive_torch as ct
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for loss in (ct.clip_loss(a, b, 2.0), ct.geometric_consistency_loss(a, b)):
        (g,) = torch.autograd.grad(loss, (a,), create_graph=True)
        if g.requires_grad:
            try:
                torch.autograd.grad(g.sum(), (a,))
            except RuntimeError:
                continue
            raise AssertionError("second derivative should raise")

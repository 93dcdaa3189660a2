import math

import pytest
import torch
import torch.nn.functional as F

import contrastive_torch as ct
import reference as ref
from conftest import HAS_NEW_API, needs_cuda, needs_new_api

TOL = 1e-10


def _pair(n=9, d=6, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=dtype)
    b = torch.randn(n, d, generator=g, dtype=dtype)
    return a.requires_grad_(grad), b.requires_grad_(grad)


def _grads(loss, inputs):
    return torch.autograd.grad(loss, inputs)


def _close(x, y, tol=TOL):
    assert torch.allclose(x, y, rtol=tol, atol=tol), (x - y).abs().max().item()


# ---- Parity with PyTorch's own math (float64, 1e-10) -----------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_clip_matches_cross_entropy(eps):
    a, b = _pair()
    ls = torch.tensor(2.7, dtype=torch.float64, requires_grad=True)
    got = ct.clip_loss(a, b, ls, label_smoothing=eps)
    want = ref.clip_cross_entropy(a, b, ls, label_smoothing=eps)
    _close(got, want)
    for g, w in zip(_grads(got, (a, b, ls)), _grads(want, (a, b, ls))):
        _close(g, w)


def test_clip_learnable_log_scale():
    """CLIP's parameterisation: logit_scale = exp(theta); dL/dtheta arrives through autograd."""
    a, b = _pair()
    theta = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    got = ct.clip_loss(F.normalize(a), F.normalize(b), theta.exp())
    want = ref.clip_cross_entropy(F.normalize(a), F.normalize(b), theta.exp())
    _close(got, want)
    for g, w in zip(_grads(got, (a, b, theta)), _grads(want, (a, b, theta))):
        _close(g, w)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_info_nce_matches_reference(symmetric, reduction, eps):
    a, b = _pair(n=7, d=4, seed=1)
    got = ct.info_nce_loss(a, b, 0.3, symmetric=symmetric, reduction=reduction, label_smoothing=eps)
    want = ref.info_nce(a, b, 1 / 0.3, eps=eps, symmetric=symmetric, reduction=reduction)
    _close(got, want)
    for g, w in zip(_grads(got, (a, b)), _grads(want, (a, b))):
        _close(g, w)


def test_info_nce_one_direction_is_cross_entropy():
    a, b = _pair(seed=2)
    got = ct.info_nce_loss(a, b, temperature=0.5)
    want = F.cross_entropy(a @ b.T / 0.5, torch.arange(a.shape[0]))
    _close(got, want)
    for g, w in zip(_grads(got, (a, b)), _grads(want, (a, b))):
        _close(g, w)


@pytest.mark.parametrize("symmetric", [False, True])
def test_labels_multiple_positives(symmetric):
    a, b = _pair(n=8, d=5, seed=3)
    la = torch.tensor([0, 1, 1, 2, 3, 3, 3, 9])   # 9 has no positive among lb: excluded
    lb = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])
    got = ct.info_nce_loss(a, b, 0.4, labels=la, key_labels=lb, symmetric=symmetric,
                           label_smoothing=0.1)
    want = ref.info_nce(a, b, 1 / 0.4, la, lb, eps=0.1, symmetric=symmetric)
    _close(got, want)
    for g, w in zip(_grads(got, (a, b)), _grads(want, (a, b))):
        _close(g, w)


def test_clip_labels_and_distinct_labels():
    a, b = _pair(n=6, d=3, seed=4)
    lab = torch.tensor([5, 5, 1, 2, 2, 2])
    _close(ct.clip_loss(a, b, 3.0, labels=lab), ref.info_nce(a, b, 3.0, lab, lab, symmetric=True))
    distinct = torch.arange(6) * 10
    _close(ct.clip_loss(a, b, 3.0, labels=distinct), ct.clip_loss(a, b, 3.0))
    _close(ct.clip_loss(a, b, 3.0, labels=(lab, lab)), ct.clip_loss(a, b, 3.0, labels=lab))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_nt_xent_matches_reference(reduction, eps):
    a, b = _pair(n=6, d=4, seed=5)
    got = ct.nt_xent_loss(a, b, 0.25, reduction=reduction, label_smoothing=eps)
    want = ref.nt_xent(a, b, 4.0, reduction=reduction, eps=eps)
    _close(got, want)
    for g, w in zip(_grads(got, (a, b)), _grads(want, (a, b))):
        _close(g, w)


def test_nt_xent_cross_entropy_and_labels():
    a, b = _pair(n=5, d=7, seed=6)
    ls = torch.tensor(3.5, dtype=torch.float64, requires_grad=True)
    got = ct.nt_xent_loss(a, b, logit_scale=ls)
    want = ref.nt_xent_cross_entropy(a, b, ls)
    _close(got, want)
    for g, w in zip(_grads(got, (a, b, ls)), _grads(want, (a, b, ls))):
        _close(g, w)
    lab = torch.tensor([0, 1, 0, 2, 1])
    _close(ct.nt_xent_loss(a, b, 0.5, labels=lab), ref.nt_xent(a, b, 2.0, labels=lab))


def test_upstream_scales_gradients():
    a, b = _pair(seed=7)
    g1 = _grads(ct.clip_loss(a, b, 2.0), (a, b))
    g2 = _grads(2.5 * ct.clip_loss(a, b, 2.0), (a, b))
    for x, y in zip(g1, g2):
        _close(2.5 * x, y)


def test_identities():
    n = 7
    z = torch.ones(n, 3, dtype=torch.float64)
    assert abs(ct.clip_loss(z, z, 10.0).item() - math.log(n)) < 1e-12
    assert abs(ct.nt_xent_loss(z, z, 0.1).item() - math.log(2 * n - 1)) < 1e-12
    one = torch.randn(1, 4, dtype=torch.float64)
    assert ct.clip_loss(one, one, 3.0).item() == 0.0


# ---- gradcheck (every op, every differentiable input, logit_scale) ----------------------------

def test_gradcheck_clip():
    a, b = _pair(n=5, d=3, seed=8)
    ls = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y, s: ct.clip_loss(x, y, s, label_smoothing=0.1),
                                    (a, b, ls))


def test_gradcheck_info_nce_labels():
    a, b = _pair(n=6, d=3, seed=9)
    lab = torch.tensor([0, 0, 1, 2, 2, 3])
    ls = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, y, s: ct.info_nce_loss(x, y, logit_scale=s, labels=lab, reduction="sum"),
        (a, b, ls))


def test_gradcheck_nt_xent():
    a, b = _pair(n=4, d=3, seed=10)
    ls = torch.tensor(2.2, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor([0, 1, 0, 1])
    assert torch.autograd.gradcheck(
        lambda x, y, s: ct.nt_xent_loss(x, y, logit_scale=s, labels=lab, label_smoothing=0.05),
        (a, b, ls))


# ---- Layouts, dtypes, threads ------------------------------------------------------------------

def test_strided_inputs_match_contiguous():
    a, b = _pair(n=8, d=5, seed=11, grad=False)
    want = ct.clip_loss(a, b, 2.0)
    at = a.T.contiguous().T                       # column-major
    wide = torch.zeros(8, 11, dtype=torch.float64)
    wide[:, 3:8] = b
    bs = wide[:, 3:8]                             # row-strided (row stride 11)
    tall = torch.zeros(16, 5, dtype=torch.float64)
    tall[::2] = a
    as2 = tall[::2]                               # every other row
    for x, y in ((at, b), (a, bs), (as2, bs), (at, bs)):
        assert not (x.is_contiguous() and y.is_contiguous())
        _close(ct.clip_loss(x, y, 2.0), want, 1e-12)
    x = at.detach().requires_grad_()              # column-major leaf
    y = bs.detach().requires_grad_()              # row-strided leaf
    ga, gb = _grads(ct.clip_loss(x, y, 2.0), (x, y))
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    ra, rb = _grads(ct.clip_loss(a2, b2, 2.0), (a2, b2))
    _close(ga, ra, 1e-12)
    _close(gb, rb, 1e-12)


def test_float32_close_to_float64():
    a, b = _pair(n=33, d=16, seed=12, grad=False)
    l64 = ct.clip_loss(a, b, 5.0)
    l32 = ct.clip_loss(a.float(), b.float(), 5.0)
    assert l32.dtype == torch.float32 and l64.dtype == torch.float64
    assert abs(l32.item() - l64.item()) < 1e-4 * max(1, abs(l64.item()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_cpu_inputs(dtype):
    a, b = _pair(n=16, d=8, seed=13, dtype=torch.float32, grad=False)
    ah, bh = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
    loss = ct.clip_loss(ah, bh, 4.0)
    assert loss.dtype == torch.float32
    ga, gb = _grads(loss, (ah, bh))
    assert ga.dtype == dtype and gb.dtype == dtype
    af, bf = ah.detach().float().requires_grad_(), bh.detach().float().requires_grad_()
    lf = ct.clip_loss(af, bf, 4.0)
    assert abs(loss.item() - lf.item()) < 1e-6
    rf = _grads(lf, (af, bf))
    assert torch.allclose(ga.float(), rf[0], rtol=2e-2, atol=1e-3)


def test_autocast_bf16_cpu():
    torch.manual_seed(0)
    img_tower = torch.nn.Linear(12, 8)
    txt_tower = torch.nn.Linear(10, 8)
    x, y = torch.randn(24, 12), torch.randn(24, 10)
    theta = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fi, ft = img_tower(x), txt_tower(y)
        assert fi.dtype == torch.bfloat16
        loss = ct.clip_loss(F.normalize(fi, dim=-1), F.normalize(ft, dim=-1), theta.exp())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert img_tower.weight.grad is not None and torch.isfinite(img_tower.weight.grad).all()
    assert theta.grad is not None and torch.isfinite(theta.grad)
    # The same model in float32 gives nearly the same loss.
    with torch.no_grad():
        l32 = ct.clip_loss(F.normalize(img_tower(x), dim=-1), F.normalize(txt_tower(y), dim=-1),
                           theta.exp())
    assert abs(loss.item() - l32.item()) < 0.05 * max(1.0, abs(l32.item()))


def test_threads_do_not_change_results():
    a, b = _pair(n=300, d=16, seed=14, dtype=torch.float32)
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        a.grad = b.grad = None
        loss = ct.clip_loss(a, b, 10.0)
        loss.backward()
        out.append((loss.detach().clone(), a.grad.clone(), b.grad.clone()))
    for x, y in zip(*out):
        assert torch.equal(x, y)


# ---- Modules ----------------------------------------------------------------------------------

def test_modules():
    a, b = _pair(seed=15, grad=False)
    ls = torch.tensor(3.0, dtype=torch.float64)
    _close(ct.ClipLoss()(a, b, ls), ct.clip_loss(a, b, ls))
    _close(ct.InfoNCELoss(0.2)(a, b), ct.info_nce_loss(a, b, 0.2))
    _close(ct.InfoNCELoss(0.2, symmetric=True)(a, b), ct.clip_loss(a, b, 5.0))
    _close(ct.NTXentLoss(0.3)(a, b), ct.nt_xent_loss(a, b, 0.3))
    assert ct.ClipLoss().state_dict() == {}


# ---- Bad input: ValueError with the library's message -----------------------------------------

_A = torch.randn(4, 3)
_B = torch.randn(4, 3)
_BAD = [
    ("1-D", lambda: ct.clip_loss(torch.randn(4), _B), "2-D"),
    ("3-D", lambda: ct.clip_loss(torch.randn(2, 4, 3), _B), "2-D"),
    ("rows", lambda: ct.clip_loss(_A, torch.randn(5, 3)), "rows"),
    ("cols", lambda: ct.clip_loss(_A, torch.randn(4, 2)), "column"),
    ("nan", lambda: ct.clip_loss(_A, _B.clone().index_fill_(0, torch.tensor([2]), float("nan"))), "non-finite"),
    ("inf", lambda: ct.nt_xent_loss(_A.clone().fill_(float("inf")), _B), "non-finite"),
    ("int dtype", lambda: ct.clip_loss(_A.int(), _B.int()), "dtype"),
    ("complex dtype", lambda: ct.clip_loss(_A.to(torch.complex64), _B.to(torch.complex64)), "dtype"),
    ("dtype mix", lambda: ct.clip_loss(_A, _B.double()), "dtype"),
    ("reduction", lambda: ct.clip_loss(_A, _B, reduction="none"), "reduction"),
    ("smoothing", lambda: ct.clip_loss(_A, _B, label_smoothing=1.5), "smoothing"),
    ("temperature", lambda: ct.info_nce_loss(_A, _B, 0.0), "temperature"),
    ("nt temperature", lambda: ct.nt_xent_loss(_A, _B, -1.0), "temperature"),
    ("logit_scale shape", lambda: ct.clip_loss(_A, _B, torch.ones(2)), "logit_scale"),
    ("logit_scale value", lambda: ct.clip_loss(_A, _B, float("inf")), "logit_scale"),
    ("labels length", lambda: ct.clip_loss(_A, _B, labels=torch.arange(3)), "label"),
    ("labels dtype", lambda: ct.clip_loss(_A, _B, labels=torch.ones(4)), "integer"),
    ("labels one side", lambda: ct.info_nce_loss(_A, _B, labels=None, key_labels=torch.arange(4)), "labels"),
    ("nt labels length", lambda: ct.nt_xent_loss(_A, _B, labels=torch.arange(5)), "label"),
    ("not a tensor", lambda: ct.clip_loss([[1.0]], _B), "Tensor"),
]


@pytest.mark.parametrize("name,fn,word", _BAD, ids=[x[0] for x in _BAD])
def test_bad_input_raises_value_error(name, fn, word):
    with pytest.raises(ValueError, match=f"(?i){word}"):
        fn()


def test_unsupported_device_raises():
    with pytest.raises(ValueError, match="not supported"):
        ct.clip_loss(_A.to("meta"), _B.to("meta"))
    with pytest.raises(ValueError, match="one device"):
        ct.clip_loss(_A, _B.to("meta"))
    with pytest.raises(ValueError, match="not supported"):
        ct.geometric_consistency_loss(_A.to("meta"), _B.to("meta"))


@needs_cuda
def test_cpu_cuda_mix_raises():
    with pytest.raises(ValueError, match="one device"):
        ct.clip_loss(_A.cuda(), _B)
    with pytest.raises(ValueError, match="CPU"):
        ct.geometric_consistency_loss(_A.cuda(), _B.cuda())


# ---- torch >= 2.4: opcheck and torch.compile ----------------------------------------------------

@needs_new_api
def test_opcheck():
    a, b = _pair(n=5, d=3, seed=16)
    lab = torch.tensor([0, 1, 0, 2, 2])
    torch.library.opcheck(torch.ops.contrastive.info_nce_fwd, (a, b, None, None, 0.5, 0.1, True, 0))
    torch.library.opcheck(torch.ops.contrastive.info_nce_fwd, (a, b, lab, lab, 0.5, 0.0, False, 1))
    torch.library.opcheck(torch.ops.contrastive.nt_xent_fwd, (a, b, None, 0.5, 0.0, 0))
    torch.library.opcheck(torch.ops.contrastive.nt_xent_fwd, (a, b, lab, 0.5, 0.1, 1))


@needs_new_api
def test_compile_fullgraph():
    a, b = _pair(n=6, d=4, seed=17)
    ls = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def step(x, y, s):
        return ct.clip_loss(F.normalize(x, dim=-1), F.normalize(y, dim=-1), s.exp()) + \
            ct.nt_xent_loss(x, y, 0.5)

    compiled = torch.compile(step, fullgraph=True)
    got = compiled(a, b, ls)
    want = step(a, b, ls)
    _close(got, want, 1e-9)
    for g, w in zip(_grads(got, (a, b, ls)), _grads(want, (a, b, ls))):
        _close(g, w, 1e-9)


# ---- CUDA (where built and present) -------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
def test_cuda_parity(dtype, tol):
    a, b = _pair(n=257, d=64, seed=18, dtype=torch.float32, grad=False)
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    ls = torch.tensor(14.0, requires_grad=True)
    ls_c = ls.detach().cuda().requires_grad_()
    ac, bc = a.cuda().to(dtype).requires_grad_(), b.cuda().to(dtype).requires_grad_()
    loss = ct.clip_loss(ac, bc, ls_c)
    assert loss.dtype == torch.float32 and loss.device.type == "cuda"
    a64, b64 = ac.detach().double().cpu().requires_grad_(), bc.detach().double().cpu().requires_grad_()
    ls64 = ls.detach().double().requires_grad_()
    want = ref.clip_cross_entropy(a64, b64, ls64)
    assert abs(loss.item() - want.item()) < tol * max(1, abs(want.item()))
    g = _grads(loss, (ac, bc, ls_c))
    w = _grads(want, (a64, b64, ls64))
    for x, y in zip(g, w):
        assert x.dtype == (ls_c.dtype if x.dim() == 0 else dtype)
        err = (x.double().cpu() - y).abs().max().item()
        assert err < tol * max(1.0, y.abs().max().item()) * 10, err
    nl = ct.nt_xent_loss(ac, bc, 0.2)
    nw = ref.nt_xent(a64, b64, 5.0)
    assert abs(nl.item() - nw.item()) < tol * max(1, abs(nw.item()))

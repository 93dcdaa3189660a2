import math

import pytest
import torch

import contrastive_torch as ct
from conftest import needs_new_api

TOL = 1e-10


def _r(n, d, seed, grad=True, unit=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if unit:
        x = torch.nn.functional.normalize(x, dim=-1)
    return x.requires_grad_(grad)


def _close(x, y, tol=TOL):
    assert torch.allclose(x, y, rtol=tol, atol=tol), (x - y).abs().max().item()


def _check_grads(got, want, inputs, tol=TOL):
    _close(got, want, tol)
    for g, w in zip(torch.autograd.grad(got, inputs, allow_unused=True),
                    torch.autograd.grad(want, inputs, allow_unused=True)):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            _close(g, w, tol)


# ---- References (plain PyTorch, materialised) --------------------------------------------------

def _info_nce(x, y, tau):
    logits = x @ y.T / tau
    return torch.nn.functional.cross_entropy(logits, torch.arange(x.shape[0]))


def ref_feature_separation(a, b, ai, bi, aia, bia, tau=0.07, wo=1.0, wc=1.0, wu=1.0, t=2.0,
                           form="literal"):
    n = a.shape[0]
    ortho = ((a * ai).sum(1) ** 2 + (b * bi).sum(1) ** 2).sum() / n
    con = _info_nce(ai, aia, tau) + _info_nce(bi, bia, tau)
    gv = torch.exp(-t * torch.cdist(ai, ai) ** 2)
    gu = torch.exp(-t * torch.cdist(bi, bi) ** 2)
    if form == "literal":
        uni = torch.log((gv.sum() + gu.sum()) / n)
    else:
        off = ~torch.eye(n, dtype=torch.bool)
        uni = torch.log(gv[off].sum() / (n * (n - 1))) + torch.log(gu[off].sum() / (n * (n - 1)))
    return wo * ortho + wc * con + wu * uni


def bridge_mean(a, b, t):
    m = t * a + (1 - t) * b
    return m / m.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def ref_bridge_loss(a, b, a_aug, t, nll=False):
    d2 = ((a_aug - bridge_mean(a, b, t)) ** 2).sum(1)
    if nll:
        d2 = d2 / (2 * t * (1 - t))
    return d2.mean()


def ref_geometric_consistency(a, b, wx=1.0, wi=1.0):
    n = a.shape[0]
    m = a @ b.T
    return (wx * ((m - m.T) ** 2).sum() + wi * ((a @ a.T - b @ b.T) ** 2).sum()) / n


def ref_geometric_consistency_aug(a, b, aa, ba):
    n = a.shape[0]
    t1 = ((a @ a.T - aa @ aa.T) ** 2).sum() + ((b @ b.T - ba @ ba.T) ** 2).sum()
    t2 = (((a * b).sum(1) - (aa * ba).sum(1)) ** 2).sum()
    return (t1 + t2) / n


def ref_gamma_surrogate(a, b, tau, zeta_a, zeta_b, symmetric=True):
    """Deterministic weights (alpha = inf) with given log-rates: returns (value, gradient-carrier),
    the carrier having the surrogate's gradient (-s_ii + r_i log Zhat_i, r detached)."""
    n = a.shape[0]
    s = a @ b.T / tau
    eye = torch.eye(n, dtype=torch.bool)

    def direction(sm, zeta):
        log_zhat = torch.logsumexp(sm.masked_fill(eye, float("-inf")), 1) - math.log(n - 1)
        r = torch.exp(log_zhat - zeta)
        return -sm.diagonal() + r, -sm.diagonal() + r.detach() * log_zhat

    v1, g1 = direction(s, zeta_a)
    if not symmetric:
        return v1.mean(), g1.mean()
    v2, g2 = direction(s.T, zeta_b)
    return (v1.mean() + v2.mean()) / 2, (g1.mean() + g2.mean()) / 2


# ---- Feature separation ------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["literal", "wang_isola"])
def test_feature_separation_matches_reference(form):
    xs = [_r(7, 5, s, unit=True) for s in range(6)]
    got = ct.feature_separation_loss(*xs, temperature=0.3, orthogonality_weight=0.7,
                                     contrastive_weight=1.3, uniformity_weight=0.4, uniformity=form)
    want = ref_feature_separation(*xs, tau=0.3, wo=0.7, wc=1.3, wu=0.4, form=form)
    _check_grads(got, want, xs, 1e-9)


def test_feature_separation_gradcheck_and_no_grad():
    xs = [_r(4, 3, 10 + s) for s in range(6)]
    assert torch.autograd.gradcheck(lambda *x: ct.feature_separation_loss(*x, temperature=0.5), xs)
    with torch.no_grad():
        l0 = ct.feature_separation_loss(*xs, temperature=0.5)
    _close(l0, ct.feature_separation_loss(*xs, temperature=0.5))
    assert not l0.requires_grad


# ---- Brownian bridge ---------------------------------------------------------------------------

@pytest.mark.parametrize("nll", [False, True])
def test_bridge_loss_matches_reference(nll):
    a, b, aa = _r(6, 4, 20, unit=True), _r(6, 4, 21, unit=True), _r(6, 4, 22, unit=True)
    got = ct.brownian_bridge_loss(a, b, aa, t=0.3, nll_weight=nll)
    _check_grads(got, ref_bridge_loss(a, b, aa, 0.3, nll), (a, b, aa))


def test_bridge_loss_detach_and_zero_at_mean():
    a, b = _r(5, 3, 23, unit=True), _r(5, 3, 24, unit=True)
    aa = bridge_mean(a, b, 0.25).detach().requires_grad_()
    assert ct.brownian_bridge_loss(a, b, aa).item() < 1e-20
    loss = ct.brownian_bridge_loss(a, b, _r(5, 3, 25), detach_a_aug=True)
    x = loss.grad_fn  # gradient flows to a and b only
    assert x is not None


def test_bridge_loss_gradcheck_random_t():
    xs = [_r(4, 3, 30 + s) for s in range(3)]
    assert torch.autograd.gradcheck(
        lambda *x: ct.brownian_bridge_loss(*x, random_t=True, seed=5, step=2, nll_weight=True), xs)


def test_bridge_sample_with_noise_matches_formula():
    a, b = _r(6, 8, 40, unit=True), _r(6, 8, 41, unit=True)
    eps = torch.randn(6, 8, dtype=torch.float64)
    t = 0.3
    y = ct.brownian_bridge_sample(a, b, t, eps=eps)
    want = bridge_mean(a, b, t) + (1 / math.sqrt(8)) * math.sqrt(t * (1 - t)) * eps
    _check_grads(y.sum() + (y ** 2).sum(), want.sum() + (want ** 2).sum(), (a, b))
    _close(y, want)


def test_bridge_sample_deterministic_and_trajectory_endpoints():
    a, b = _r(5, 6, 42, unit=True), _r(5, 6, 43, unit=True)
    y1 = ct.brownian_bridge_sample(a, b, seed=9, step=3)
    y2 = ct.brownian_bridge_sample(a, b, seed=9, step=3)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, ct.brownian_bridge_sample(a, b, seed=9, step=4))
    path = ct.brownian_bridge_sample(a, b, steps=6, seed=1)
    assert path.shape == (5, 7, 6)
    _close(path[:, 0], b.detach(), 1e-12)
    _close(path[:, -1], a.detach(), 1e-12)
    assert torch.autograd.gradcheck(lambda x, z: ct.brownian_bridge_sample(x, z, steps=3, seed=2),
                                    (a, b))
    assert torch.autograd.gradcheck(
        lambda x, z: ct.brownian_bridge_sample(x, z, random_t=True, reproject=True, seed=2), (a, b))


# ---- Geometric consistency ---------------------------------------------------------------------

def test_geometric_consistency_matches_reference():
    a, b = _r(9, 4, 50), _r(9, 4, 51)
    _check_grads(ct.geometric_consistency_loss(a, b), ref_geometric_consistency(a, b), (a, b), 1e-9)
    _check_grads(ct.geometric_consistency_loss(a, b, cross_modal_weight=0.3, in_modal_weight=2.0),
                 ref_geometric_consistency(a, b, 0.3, 2.0), (a, b), 1e-9)
    assert ct.geometric_consistency_loss(a, a).item() < 1e-20


def test_geometric_consistency_augmented():
    a, b, aa, ba = (_r(6, 3, 52 + s) for s in range(4))
    _check_grads(ct.geometric_consistency_loss(a, b, aa, ba),
                 ref_geometric_consistency_aug(a, b, aa, ba), (a, b, aa, ba), 1e-9)
    loss = ct.geometric_consistency_loss(a, b, aa, ba, detach_a_aug=True, detach_b_aug=True)
    ga, gaa = torch.autograd.grad(loss, (a, aa), allow_unused=True)
    assert gaa is None or torch.count_nonzero(gaa) == 0
    assert torch.autograd.gradcheck(lambda *x: ct.geometric_consistency_loss(*x), (a, b, aa, ba))


# ---- The gamma loss ----------------------------------------------------------------------------

@pytest.mark.parametrize("symmetric", [True, False])
def test_gamma_exact_rate_matches_reference(symmetric):
    a, b = _r(7, 4, 60), _r(7, 4, 61)
    za = torch.randn(7, dtype=torch.float64)
    zb = torch.randn(7, dtype=torch.float64)
    ids = torch.arange(7) + 100
    got = ct.gamma_nce_loss(a, b, ids, temperature=0.5, alpha=math.inf, rate_source="exact",
                            exact_log_normalizer=(za, zb if symmetric else None), symmetric=symmetric)
    value, carrier = ref_gamma_surrogate(a, b, 0.5, za, zb, symmetric)
    _close(got, value)
    for g, w in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(carrier, (a, b))):
        _close(g, w)


def test_gamma_same_batch_with_positive_is_clip_gradient():
    """Rate from the same batch, positive in the normaliser, g/alpha := 1: the CLIP gradient."""
    a, b = _r(8, 5, 62), _r(8, 5, 63)
    ids = torch.arange(8)
    g = ct.gamma_nce_loss(a, b, ids, temperature=0.4, alpha=math.inf, rate_source="same_batch",
                          positive_in_normaliser=True)
    c = ct.clip_loss(a, b, 1 / 0.4)
    for x, y in zip(torch.autograd.grad(g, (a, b)), torch.autograd.grad(c, (a, b))):
        _close(x, y, 1e-12)


def test_gamma_state_updates_and_round_trips():
    torch.manual_seed(0)
    a, b = _r(6, 4, 64), _r(6, 4, 65)
    loss_mod = ct.GammaNCELoss(num_samples=50, temperature=0.5, seed=7)
    ids = torch.tensor([1, 4, 9, 16, 25, 36])
    assert not loss_mod.state.visited.any()
    l1 = loss_mod(a, b, ids, step=0)
    assert loss_mod.state.visited[:, ids].all() and loss_mod.state.visited.sum() == 12
    # First visit: zeta = log Zhat (negatives only: LSE_{j != i} s_ij - log(N - 1)).
    s = (a @ b.T / 0.5).detach()
    eye = torch.eye(6, dtype=torch.bool)
    log_zhat = torch.logsumexp(s.masked_fill(eye, float("-inf")), 1) - math.log(5)
    _close(loss_mod.state.zeta[0, ids], log_zhat, 1e-12)
    # ... and with alpha = 1 the weights are g_i (random), so the loss is finite and differentiable.
    l1.backward()
    assert torch.isfinite(a.grad).all()
    sd = loss_mod.state_dict()
    other = ct.GammaNCELoss(num_samples=50, temperature=0.5, seed=7)
    other.load_state_dict(sd)
    assert torch.equal(other.state.zeta, loss_mod.state.zeta)
    assert torch.equal(other.state.visited, loss_mod.state.visited)
    # The same step on equal states gives the same loss and the same updated state.
    l_a = loss_mod(a.detach(), b.detach(), ids, step=1)
    l_b = other(a.detach(), b.detach(), ids, step=1)
    assert torch.equal(l_a, l_b) and torch.equal(other.state.zeta, loss_mod.state.zeta)
    nan_free = loss_mod.state.log_normalizer(ids)
    assert torch.isfinite(nan_free).all()
    assert torch.isnan(loss_mod.state.log_normalizer([0])).all()


def test_gamma_gradcheck_logit_scale():
    a, b = _r(5, 3, 66), _r(5, 3, 67)
    ids = torch.arange(5)
    ex = (torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64))
    ls = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, y, s: ct.gamma_nce_loss(x, y, ids, rate_source="exact", exact_log_normalizer=ex,
                                          alpha=4.0, seed=2, logit_scale=s), (a, b, ls))


def test_gamma_details_and_bf16():
    a, b = _r(6, 4, 68, grad=False), _r(6, 4, 69, grad=False)
    loss, det = ct.gamma_nce_loss(a, b, torch.arange(6), rate_source="same_batch",
                                  return_details=True)
    _close(det["info_nce"], ct.clip_loss(a, b, 1 / 0.07), 1e-9)
    ah = a.to(torch.bfloat16).requires_grad_()
    lh = ct.gamma_nce_loss(ah, b.to(torch.bfloat16), torch.arange(6), rate_source="same_batch")
    assert lh.dtype == torch.float32
    lh.backward()
    assert ah.grad.dtype == torch.bfloat16


# ---- Bad input ---------------------------------------------------------------------------------

_X = torch.randn(4, 3)
_BAD = [
    ("fs shapes", lambda: ct.feature_separation_loss(_X, _X, _X, _X, _X, torch.randn(5, 3)), ""),
    ("fs dtype", lambda: ct.feature_separation_loss(_X, _X, _X, _X, _X, _X.double()), "dtype"),
    ("fs uniformity", lambda: ct.feature_separation_loss(_X, _X, _X, _X, _X, _X, uniformity="x"), "uniformity"),
    ("fs nan", lambda: ct.feature_separation_loss(_X, _X, _X * float("nan"), _X, _X, _X), "non-finite"),
    ("bridge shapes", lambda: ct.brownian_bridge_loss(_X, _X, torch.randn(4, 2)), ""),
    ("bridge t", lambda: ct.brownian_bridge_loss(_X, _X, _X, t=1.5), "t"),
    ("bridge 1-D", lambda: ct.brownian_bridge_sample(torch.randn(4), _X), "2-D"),
    ("bridge steps", lambda: ct.brownian_bridge_sample(_X, _X, steps=-1), "steps"),
    ("gc shapes", lambda: ct.geometric_consistency_loss(_X, torch.randn(3, 3)), ""),
    ("gc one aug", lambda: ct.geometric_consistency_loss(_X, _X, _X), "a_aug"),
    ("gc weight", lambda: ct.geometric_consistency_loss(_X, _X, cross_modal_weight=-1), "weight"),
    ("gamma no state", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(4)), "NormalizerState"),
    ("gamma ids", lambda: ct.gamma_nce_loss(_X, _X, None, rate_source="same_batch"), "ids"),
    ("gamma ids length", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(3), rate_source="same_batch"), ""),
    ("gamma ids range", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(4) + 8, ct.NormalizerState(10)), ""),
    ("gamma duplicate ids", lambda: ct.gamma_nce_loss(_X, _X, torch.tensor([0, 0, 1, 2]), ct.NormalizerState(10)), ""),
    ("gamma rate", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(4), rate_source="x"), "rate_source"),
    ("gamma alpha", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(4), rate_source="same_batch", alpha=-1.0), "alpha"),
    ("gamma exact missing", lambda: ct.gamma_nce_loss(_X, _X, torch.arange(4), rate_source="exact"), ""),
    ("state directions", lambda: ct.NormalizerState(10, directions=3), "directions"),
]


@pytest.mark.parametrize("name,fn,word", _BAD, ids=[x[0] for x in _BAD])
def test_bad_input_raises_value_error(name, fn, word):
    with pytest.raises(ValueError, match=f"(?i){word}"):
        fn()


# ---- torch >= 2.4 ------------------------------------------------------------------------------

@needs_new_api
def test_opcheck_regularizers():
    xs = [_r(5, 3, 70 + s) for s in range(6)]
    ops = torch.ops.contrastive
    torch.library.opcheck(ops.feature_separation_fwd, (*xs, 1.0, 1.0, 1.0, 0.5, 2.0, False, True))
    torch.library.opcheck(ops.brownian_bridge_loss_fwd, (*xs[:3], 0.25, False, 0.05, 0.95, 0, 0, 0, None, False, False, True))
    torch.library.opcheck(ops.geometric_consistency_fwd, (*xs[:4], 1.0, 1.0, False, False, True))
    torch.library.opcheck(ops.geometric_consistency_fwd, (*xs[:2], None, None, 1.0, 1.0, False, False, True))
    torch.library.opcheck(ops.brownian_bridge_sample_fwd, (*xs[:2], None, 3, 0.25, False, 0.05, 0.95, True, 0.0, False, 1, 0, 0, None))
    ids = torch.arange(5)
    torch.library.opcheck(ops.gamma_nce_fwd, (*xs[:2], ids, None, None, 0.5, True, 2.0, 0.9, 1, 0, 1, False, False, None, None, 0))


@needs_new_api
def test_compile_regularizers():
    xs = [_r(5, 3, 80 + s) for s in range(6)]

    def f(*x):
        return (ct.feature_separation_loss(*x) + ct.geometric_consistency_loss(x[0], x[1]) +
                ct.brownian_bridge_loss(*x[:3]) + ct.brownian_bridge_sample(x[0], x[1], seed=1).sum())

    got = torch.compile(f, fullgraph=True)(*xs)
    _check_grads(got, f(*xs), xs, 1e-9)

"Per-instance privacy beyond the notebook: many random cross-checks against Opacus, dp-accounting and 50-digit arithmetic, SGLD's mechanics, the composition, the scores' validation and the unlearning-steps bound."
import math
import numpy as np
import pytest
import torch
from unlearnrepro.core import BadValueError, UnknownNameError, make_generator
from unlearnrepro.data import load_dataset, TensorData
from unlearnrepro.models import Recipe, OPTIMIZERS, train, fit, create_model
from unlearnrepro.privacy import (SGLD, step_rdp, order_schedule, composition_weights, composed_rdp, checkpoint_steps,
                                  small_signal_score, privacy_scores, run_privacy_scores, PRIVACY_SCORES, weak_triangle_c,
                                  langevin_tau, langevin_decay, langevin_temperature, unlearning_bound, unlearning_steps,
                                  gaussian_renyi, noisy_gd)


def _random_cases(n, seed, z_range=(0.3, 30.0), alpha_max=256):
    rng = np.random.default_rng(seed)
    alphas = np.unique(np.round(np.exp(rng.uniform(np.log(2), np.log(alpha_max), n))).astype(int)).tolist()
    out = []
    for _ in range(n):
        a = int(rng.choice(alphas))
        q = float(1.0 if rng.random() < 0.05 else np.exp(rng.uniform(np.log(1e-4), 0)))
        z = float(np.exp(rng.uniform(*np.log(z_range))))
        out.append((a, q, z))
    return out


# ---------------------------------------------------------------- step_rdp
def _opacus(a, q, z):
    from opacus.accountants.analysis.rdp import compute_rdp
    return float(compute_rdp(q=q, noise_multiplier=z, steps=1, orders=[a])[0])

def _dpa(a, q, z):
    import dp_accounting
    acc = dp_accounting.rdp.RdpAccountant(orders=[a])
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)))
    return float(acc._rdp[0])

def _mp(a, q, z, dps=50):
    import mpmath as mp
    mp.mp.dps = dps
    q, z = mp.mpf(q), mp.mpf(z)
    s = mp.fsum(mp.binomial(a, k) * (1 - q) ** (a - k) * q ** k * mp.exp(mp.mpf(k * (k - 1)) / (2 * z * z)) for k in range(a + 1))
    return float(mp.log(s) / (a - 1))


@pytest.mark.parametrize('ref', [_opacus, _dpa], ids=['opacus', 'dp_accounting'])
def test_step_rdp_matches_accountants(ref):
    "300 random (alpha, q, z): equal to the accountants to 1e-6 relative (absolute 1e-13 where epsilon is below their rounding)."
    for a, q, z in _random_cases(300, seed=0 if ref is _opacus else 1):
        ours, theirs = step_rdp(a, q, z), ref(a, q, z)
        assert abs(ours - theirs) <= max(1e-6 * abs(theirs), 1e-13), (a, q, z, ours, theirs)


def test_step_rdp_matches_50_digits():
    "Against mpmath at 50 digits, including large z where epsilon ~ 1e-15 and summing terms near 1 would lose every digit."
    for a, q, z in _random_cases(120, seed=2, z_range=(0.3, 1e4), alpha_max=64):
        ours, exact = step_rdp(a, q, z), _mp(a, q, z)
        assert abs(ours - exact) <= 1e-10 * abs(exact) + 1e-300, (a, q, z, ours, exact)


def test_step_rdp_vectorised_and_limits():
    z = np.array([[0.5, 1.0], [2.0, np.inf]])
    out = step_rdp(8, 0.1, z)
    assert out.shape == (2, 2) and out[1, 1] == 0.0
    for i in range(2):
        for j in range(2): assert out[i, j] == step_rdp(8, 0.1, float(z[i, j]))
    assert isinstance(step_rdp(8, 0.1, 1.0), float)
    assert step_rdp(8, 0.1, np.float32(1.0)) == pytest.approx(step_rdp(8, 0.1, 1.0), rel=1e-6)
    assert step_rdp(8, 0.1, 1e-300) == math.inf  # no signal-to-noise at all: infinite, not NaN
    # monotone: larger order, larger rate, smaller z -> larger epsilon
    assert step_rdp(9, 0.1, 1.0) > step_rdp(8, 0.1, 1.0)
    assert step_rdp(8, 0.2, 1.0) > step_rdp(8, 0.1, 1.0)
    assert step_rdp(8, 0.1, 0.9) > step_rdp(8, 0.1, 1.0)
    assert step_rdp(np.int64(4), 0.5, 2.0) == step_rdp(4, 0.5, 2.0)


@pytest.mark.parametrize('alpha', [2.5, 1, 0, -3, True, 2.0, 'eight', None])
def test_step_rdp_rejects_orders(alpha):
    with pytest.raises(BadValueError, match='alpha='):
        step_rdp(alpha, 0.1, 1.0)

@pytest.mark.parametrize('q', [0, -0.1, 1.0001, float('nan'), float('inf'), True])
def test_step_rdp_rejects_rates(q):
    with pytest.raises(BadValueError, match='q='):
        step_rdp(8, q, 1.0)

@pytest.mark.parametrize('z', [0.0, -1.0, float('nan'), -math.inf, [1.0, 0.0]])
def test_step_rdp_rejects_noise(z):
    with pytest.raises(BadValueError, match='noise_multiplier='):
        step_rdp(8, 0.1, z)


# ---------------------------------------------------------------- composition
def _gpi_alpha(order, alpha, i):  # Thudi et al.'s code
    res = alpha
    for _ in range(i): res = res * order / (order - 1) - 1 / order
    return res

@pytest.mark.parametrize('seed', range(5))
def test_order_schedule_matches_thudi_loop(seed):
    rng = np.random.default_rng(seed)
    alpha, T = int(rng.integers(2, 40)), int(rng.integers(1, 400))
    lam = float(rng.uniform(1.5, 5 * T + 2))
    assert order_schedule(alpha, T, lam).tolist() == [math.ceil(_gpi_alpha(lam, alpha, i)) for i in range(T)]
    loop = [alpha]
    for _ in range(T - 1): loop.append(math.ceil(loop[-1] * lam / (lam - 1) - 1 / lam))
    assert order_schedule(alpha, T, lam, ceil_each=True).tolist() == loop

def test_order_schedule_growth():
    T = 1000
    o = order_schedule(8, T)  # lam = 3T: growth by about e^(1/3)
    lam, fix = 3.0 * T, (3.0 * T - 1) / (3.0 * T)
    assert o[0] == 8 and (np.diff(o) >= 0).all() and o[-1] == math.ceil(fix + (lam / (lam - 1)) ** (T - 1) * (8 - fix)) == 11  # ~ 1 + e^(1/3) * 7
    assert order_schedule(8, T, ceil_each=True)[-1] >= 8 + T - 1

def test_composition_weights():
    w = composition_weights(50, 7.0)
    np.testing.assert_allclose(w, [(6 ** i) / 7 ** (i + 1) for i in range(50)], rtol=1e-12)
    assert composition_weights(10).sum() < 1
    with pytest.raises(BadValueError, match='lam=0.5'): composition_weights(10, 0.5)
    with pytest.raises(BadValueError, match='steps=0'): composition_weights(0)

@pytest.mark.parametrize('seed', range(6))
def test_composed_rdp_equals_plain_loop(seed):
    "The grouped, vectorised composition equals the plain per-step sum with per-step log-mean-exp over runs."
    rng = np.random.default_rng(seed)
    R, C, N = int(rng.integers(1, 4)), int(rng.integers(1, 6)), 5
    z = np.exp(rng.uniform(np.log(0.3), np.log(20), (R, C, N)))
    seg = rng.integers(0, 6, C); seg[0] = max(seg[0], 1)
    alpha, q = int(rng.integers(2, 12)), float(rng.uniform(0.01, 0.5))
    lam = None if seed % 2 else float(rng.uniform(1.5, 20))
    T = int(seg.sum()); L = 3.0 * T if lam is None else lam
    orders, w, seg_of = order_schedule(alpha, T, L), composition_weights(T, L), np.repeat(np.arange(C), seg)
    plain = np.zeros(N)
    for t in range(T):
        cost = np.stack([L * (orders[t] - 1) * step_rdp(int(orders[t]), q, z[r, seg_of[t]]) for r in range(R)])
        plain += w[t] * (np.log(np.exp(cost - cost.max(0)).mean(0)) + cost.max(0)) / (alpha - 1)
    np.testing.assert_allclose(composed_rdp(alpha, q, z, seg, lam), plain, rtol=1e-10)

def test_composed_rdp_properties():
    rng = np.random.default_rng(0)
    z = np.exp(rng.uniform(0, 2, (4, 30)))
    seg = [5, 5, 5, 5]
    base = composed_rdp(8, 0.05, z, seg)
    assert (composed_rdp(8, 0.05, z / 2, seg) > base).all()  # larger gradients (smaller z): larger loss
    assert (composed_rdp(16, 0.05, z, seg) > base).all()
    assert (composed_rdp(8, 0.05, np.stack([z, z / 2]), seg) > base).all()  # log-mean-exp >= each run's... of the smaller
    assert (composed_rdp(8, 0.05, np.stack([z, z / 2]), seg) < composed_rdp(8, 0.05, z / 2, seg)).all()
    np.testing.assert_allclose(composed_rdp(8, 0.05, np.full((1, 3), np.inf), [10]), 0.0)
    with pytest.raises(BadValueError, match='segment_steps=\\[1, -1\\]'): composed_rdp(8, 0.05, z[:2], [1, -1])
    with pytest.raises(BadValueError, match='must be C x N or R x C x N'): composed_rdp(8, 0.05, z[0], [1])


# ---------------------------------------------------------------- scores
def test_checkpoint_steps():
    assert checkpoint_steps([0], 4, 3).tolist() == [12]
    assert checkpoint_steps([0, 4], 4, 3).tolist() == [12, 0]
    assert checkpoint_steps([0, 1, 3], 4).tolist() == [1, 2, 1]
    for bad, msg in [([], 'do not include epoch 0'), ([2], 'do not include epoch 0'), ([0, 0], 'strictly increasing'), ([0, 5], 'within \\[0, 4\\]')]:
        with pytest.raises(BadValueError, match=msg): checkpoint_steps(bad, 4)

def test_small_signal_ranking_does_not_depend_on_sigma_alpha():
    rng = np.random.default_rng(3)
    norms = np.abs(rng.normal(1, 0.5, (9, 100)))
    S = small_signal_score(norms, 8)
    for sigma, alpha in [(0.01, 2), (1.0, 8), (30.0, 32)]:
        p = privacy_scores(norms, 100, 10, 8, sigma, alpha, method='small_signal')
        np.testing.assert_allclose(p, alpha / (2 * 100 * 10 * sigma ** 2) * S, rtol=1e-12)  # b divides n: alpha / (2 n b sigma^2)

def test_linear_regime_agreement():
    "Large sigma: step_sum -> small_signal; composed / step_sum between 1 and ~1.41 (orders and weights of Thudi's composition)."
    rng = np.random.default_rng(4)
    norms = np.abs(rng.normal(1, 0.3, (6, 50)))
    ss, st, co = [privacy_scores(norms, 50, 7, 5, 1e3, method=m) for m in ('small_signal', 'step_sum', 'composed')]
    np.testing.assert_allclose(st, ss, rtol=1e-4)
    assert ((co / st >= 1) & (co / st <= 1.45)).all()

def test_privacy_scores_inputs_and_errors():
    rng = np.random.default_rng(5)
    a = np.abs(rng.normal(1, 0.3, (2, 4, 20)))  # 2 runs, 4 checkpoints, 20 examples
    recs = [{'epochs': torch.tensor([0, 1, 2, 3]), 'norms': torch.tensor(x, dtype=torch.float64)} for x in a]
    for m in PRIVACY_SCORES.names():
        ref = privacy_scores(a, 20, 5, 3, 0.5, method=m)
        np.testing.assert_allclose(privacy_scores(recs, 20, 5, 3, 0.5, method=m), ref, rtol=1e-12)
        np.testing.assert_allclose(privacy_scores(torch.tensor(a), 20, 5, 3, 0.5, method=m), ref, rtol=1e-12)
    np.testing.assert_allclose(privacy_scores(recs[0], 20, 5, 3, 0.5), privacy_scores(a[0], 20, 5, 3, 0.5), rtol=1e-12)
    cases = [
        (dict(grad_norms=a, n=21), 'grad_norms has 20 examples \\(columns\\) but n=21'),
        (dict(grad_norms=a[0, 0]), 'must be checkpoints x examples'),
        (dict(grad_norms=-a), 'finite and non-negative'),
        (dict(grad_norms=np.where(a > 1, np.nan, a)), 'finite and non-negative'),
        (dict(sigma=0.0), 'sigma=0.0'), (dict(sigma=-1.0), 'sigma=-1.0'),
        (dict(alpha=1), 'alpha=1'), (dict(batch_size=0), 'batch_size=0'), (dict(batch_size=21), 'batch_size=21 is larger than n=20'),
        (dict(method='exact'), "unknown privacy score method 'exact'"),
        (dict(at=[1, 2, 3, 4]), 'do not include epoch 0'),
        (dict(at=[0, 1]), '4 checkpoint rows but at lists 2'),
        (dict(grad_norms=[recs[0], {'epochs': torch.tensor([0, 1, 2, 4]), 'norms': recs[1]['norms']}], epochs=4), 'recorded at different epochs'),
    ]
    for kw, msg in cases:
        args = dict(grad_norms=a, n=20, batch_size=5, epochs=3, sigma=0.5)
        args.update(kw)
        with pytest.raises((BadValueError, UnknownNameError), match=msg): privacy_scores(**args)


@pytest.fixture(scope='module')
def noisy_runs():
    d = load_dataset('digits', label_noise=0.05)
    rec = {'grad_norms': {'every': 1, 'epochs': [0]}}
    r_sgd = Recipe(epochs=4, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64)
    r_sgld = Recipe(epochs=4, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64, optimizer='sgld', opt_kw={'sigma': 0.02})
    mlp = {'name': 'mlp', 'hidden': [32]}
    return d, r_sgd, r_sgld, fit(d, mlp, r_sgd, seed=0, record=rec)[1], fit(d, mlp, r_sgld, seed=0, record=rec)[1], fit(d, mlp, r_sgd, seed=1, record=rec)[1]

def test_run_privacy_scores(noisy_runs):
    d, r_sgd, r_sgld, run_sgd, run_sgld, run_sgd1 = noisy_runs
    n = len(d.train)
    g = run_sgld['records']['grad_norms']
    np.testing.assert_allclose(run_privacy_scores(run_sgld, r_sgld), privacy_scores(g, n, 64, 4, 0.02), rtol=1e-12)
    np.testing.assert_allclose(run_privacy_scores(run_sgd, r_sgd, sigma=0.1, method='small_signal'),
                               privacy_scores(run_sgd['records']['grad_norms'], n, 64, 4, 0.1, method='small_signal'), rtol=1e-12)
    two = run_privacy_scores([run_sgd, run_sgd1], r_sgd, sigma=0.1)
    one0, one1 = run_privacy_scores(run_sgd, r_sgd, sigma=0.1), run_privacy_scores(run_sgd1, r_sgd, sigma=0.1)
    assert (two >= (one0 + one1) / 2 - 1e-9).all() and (two <= one0 + one1).all()  # log-mean-exp per step: >= the mean (Jensen), <= the max
    stacked = np.stack([r['records']['grad_norms']['norms'].double().numpy() for r in (run_sgd, run_sgd1)])
    np.testing.assert_allclose(two, privacy_scores(stacked, n, 64, 4, 0.1), rtol=1e-12)
    with pytest.raises(BadValueError, match="optimizer 'sgd' adds no noise"): run_privacy_scores(run_sgd, r_sgd)
    with pytest.raises(BadValueError, match="has no 'grad_norms' record"): run_privacy_scores(dict(run_sgd, records={}), r_sgd, sigma=0.1)
    bad = dict(run_sgd1, positions=run_sgd1['positions'][::-1].copy())
    with pytest.raises(BadValueError, match='trained on different examples'): run_privacy_scores([run_sgd, bad], r_sgd, sigma=0.1)

def test_flipped_labels_rank_high(noisy_runs):
    "Even after 4 epochs, flipped-label examples rank above clean ones on average, under every method, SGD and SGLD."
    from scipy.stats import rankdata
    d, r_sgd, r_sgld, run_sgd, run_sgld, _ = noisy_runs
    flip = np.zeros(len(d.train), bool); flip[d.noisy] = True
    for m in PRIVACY_SCORES.names():
        for s in (run_privacy_scores(run_sgd, r_sgd, sigma=0.05, method=m), run_privacy_scores(run_sgld, r_sgld, method=m)):
            r = rankdata(s) / len(s)
            assert r[flip].mean() > r[~flip].mean() + 0.1


# ---------------------------------------------------------------- SGLD
def test_sgld_noise_per_parameter_in_group_order():
    "Each parameter with a gradient gets sigma * randn(shape) from the generator seeded seed + 2, in param-group order; no grad, no draw."
    a, b, c = torch.nn.Parameter(torch.zeros(3, 2)), torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(4))
    opt = SGLD([{'params': [a, c]}, {'params': [b], 'lr': 1.0}], lr=1.0, sigma=0.5, generator_seed=4)
    a.grad, b.grad = torch.zeros(3, 2), torch.zeros(5)  # c has no gradient
    opt.step()
    g = make_generator(6)
    ea, eb = torch.randn(3, 2, generator=g), torch.randn(5, generator=g)
    torch.testing.assert_close(a.detach(), -0.5 * ea); torch.testing.assert_close(b.detach(), -0.5 * eb)
    assert torch.equal(c.detach(), torch.zeros(4))

def test_sgld_closure_and_momentum():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6)); w2 = torch.nn.Parameter(w.detach().clone())
    x = torch.randn(6)
    o1 = SGLD([w], lr=0.1, momentum=0.9, weight_decay=0.01, sigma=0.2, generator_seed=1)
    o2 = torch.optim.SGD([w2], lr=0.1, momentum=0.9, weight_decay=0.01)
    g = make_generator(3)
    for _ in range(3):
        def closure():
            o1.zero_grad(); l = (w * x).sum() ** 2; l.backward(); return l
        o1.step(closure)
        o2.zero_grad(); l = (w2 * x).sum() ** 2; l.backward()
        w2.grad.add_(torch.randn(6, generator=g), alpha=0.2); o2.step()
    torch.testing.assert_close(w.detach(), w2.detach())

def test_sgld_mask_also_masks_noise():
    "train: perturb_grads runs before before_step, so a gradient mask zeroes the noise of the masked parameters too."
    d = load_dataset('digits').train.subset(range(200))
    m = create_model('mlp', 1, 10, 8, seed=0, hidden=(16,))
    first = m[1].weight.detach().clone()
    def mask(model): model[1].weight.grad.zero_()
    r = Recipe(epochs=2, lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=50, optimizer='sgld', opt_kw={'sigma': 1.0})
    train(m, d, r, seed=0, before_step=mask)
    assert torch.equal(m[1].weight.detach().cpu(), first)  # train moved the model to get_device(); `first` is a CPU copy

def test_sgld_validation():
    for kw, msg in [({}, "needs 'sigma'"), ({'sigma': -0.1}, 'sigma=-0.1'), ({'sigma': math.inf}, 'sigma=inf'), ({'sigma': True}, 'sigma=True'),
                    ({'sigma': 0.1, 'lr': 0.2}, "unknown key\\(s\\) \\['lr'\\]")]:
        with pytest.raises(BadValueError, match=msg): Recipe(optimizer='sgld', opt_kw=kw)
    with pytest.raises(BadValueError, match='sigma=-1'): SGLD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, sigma=-1)
    with pytest.raises(BadValueError, match='generator_seed=1.5'): SGLD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, generator_seed=1.5)
    assert 'sgld' in OPTIMIZERS
    assert langevin_temperature(0.2, 0.5) == pytest.approx(0.01)


# ---------------------------------------------------------------- the bound
def test_unlearning_steps_inverts_the_bound():
    rng = np.random.default_rng(0)
    for _ in range(200):
        P, alpha, tau = float(np.exp(rng.uniform(-5, 6))), float(rng.uniform(1.1, 20)), float(rng.uniform(1, 500))
        G1, G2 = float(rng.uniform(0, 1)), float(rng.uniform(0, 0.5))
        eps = G2 + float(np.exp(rng.uniform(-6, 2)))
        k = unlearning_steps(P, alpha, eps, tau, G1, G2)
        assert unlearning_bound(k, P, alpha, tau, G1, G2) <= eps * (1 + 1e-12)
        if k > 0: assert unlearning_bound(k - 1, P, alpha, tau, G1, G2) > eps
    P = np.sort(np.exp(rng.uniform(-3, 5, 50)))
    k = unlearning_steps(P, 2, 0.05, 30.0, 0.1, 0.01)
    assert (np.diff(k) >= 0).all()  # monotone in P
    assert (unlearning_steps(P, 2, 0.01, 30.0, 0.1, 0.01) == np.inf).all()  # eps == G2: unreachable
    assert (unlearning_steps(P, 2, 0.005, 30.0, 0.1, 0.01) == np.inf).all()
    for kw, msg in [(dict(eps=0), 'eps=0'), (dict(tau=-1), 'tau=-1'), (dict(G2=-0.1), 'G2=-0.1'), (dict(alpha=1.0), 'alpha=1.0'), (dict(P4=np.nan), 'P4 must be non-negative')]:
        args = dict(P4=1.0, alpha=2, eps=0.1, tau=10.0); args.update(kw)
        with pytest.raises(BadValueError, match=msg): unlearning_steps(**args)

def test_gaussian_renyi_against_integration_and_invariance():
    from scipy.integrate import quad
    from scipy.stats import norm
    rng = np.random.default_rng(1)
    for _ in range(20):
        m1, m2 = rng.normal(0, 1, 2); s1, s2 = rng.uniform(0.5, 1.5, 2); a = float(rng.uniform(1.1, 6))
        if a * s2 ** 2 + (1 - a) * s1 ** 2 <= 0.05: continue
        num = math.log(quad(lambda x: math.exp(a * norm.logpdf(x, m1, s1) + (1 - a) * norm.logpdf(x, m2, s2)), -60, 60, points=[m1, m2], limit=400)[0]) / (a - 1)
        assert gaussian_renyi([m1], [[s1 ** 2]], [m2], [[s2 ** 2]], a) == pytest.approx(num, rel=1e-6, abs=1e-9)
    # diagonal covariances: the divergence adds up over coordinates; a common rotation leaves it unchanged
    mu1, mu2, d1, d2 = rng.normal(0, 1, 3), rng.normal(0, 1, 3), rng.uniform(0.5, 1.5, 3), rng.uniform(0.8, 1.5, 3)
    a = 2.5
    parts = sum(gaussian_renyi([mu1[i]], [[d1[i]]], [mu2[i]], [[d2[i]]], a) for i in range(3))
    full = gaussian_renyi(mu1, np.diag(d1), mu2, np.diag(d2), a)
    Q, _ = np.linalg.qr(rng.normal(0, 1, (3, 3)))
    rot = gaussian_renyi(Q @ mu1, Q @ np.diag(d1) @ Q.T, Q @ mu2, Q @ np.diag(d2) @ Q.T, a)
    assert full == pytest.approx(parts, rel=1e-10) and rot == pytest.approx(full, rel=1e-8)
    with pytest.raises(BadValueError, match='shapes do not match'): gaussian_renyi([0, 0], np.eye(2), [0], [[1.0]], 2)


def _quadratic_laws(seed):
    rng = np.random.default_rng(seed)
    d, n = 3, int(rng.integers(10, 40))
    X = rng.normal(0, 1, (n, d)); X[0] *= 4
    Q, _ = np.linalg.qr(rng.normal(0, 1, (d, d)))
    A = Q @ np.diag(rng.uniform(0.2, 1.5, d)) @ Q.T
    r, eta, temp = float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.05, 0.3)), float(rng.uniform(1e-3, 1e-2))
    H = A + r * np.eye(d); M = np.eye(d) - eta * H
    def step(mu, S, xb): return M @ mu + eta * A @ xb, M @ S @ M.T + 2 * eta * temp * np.eye(d)
    return X, A, H, M, eta, temp, step

@pytest.mark.parametrize('seed', range(4))
def test_bound_holds_exactly_on_quadratics(seed):
    "Exact Gaussian laws of noisy GD on quadratic losses: the divergence after k unlearning steps is below the bound, and Chien's decay holds."
    from scipy.linalg import solve_discrete_lyapunov
    X, A, H, M, eta, temp, step = _quadratic_laws(seed)
    d = X.shape[1]; xb, xr = X.mean(0), X[1:].mean(0)
    T = int(np.random.default_rng(seed).integers(40, 120))
    laws = {}
    for name, x in [('D', xb), ('Dp', xr)]:
        mu, S = np.zeros(d), np.zeros((d, d))
        for _ in range(T): mu, S = step(mu, S, x)
        laws[name] = (mu, S)
    nu = (np.linalg.solve(H, A @ xr), solve_discrete_lyapunov(M, 2 * eta * temp * np.eye(d)))
    m = np.linalg.eigvalsh(H).min()
    for alpha in (1.5, 2.0, 4.0):
        P4 = gaussian_renyi(*laws['D'], *laws['Dp'], 4 * alpha)
        G1, G2 = gaussian_renyi(*laws['Dp'], *nu, 4 * alpha - 1), gaussian_renyi(*nu, *laws['Dp'], 2 * alpha - 1)
        tau = langevin_tau(2 * alpha, m, eta)
        mu, S = laws['D']
        start_nu = gaussian_renyi(mu, S, *nu, alpha)
        for k in range(0, 301):
            meas = gaussian_renyi(mu, S, *laws['Dp'], alpha)
            assert meas <= unlearning_bound(k, P4, alpha, tau, G1, G2) * (1 + 1e-9)
            assert gaussian_renyi(mu, S, *nu, alpha) <= langevin_decay(start_nu, k, alpha, m, eta) * (1 + 1e-9) + 1e-12
            mu, S = step(mu, S, xr)

def test_noisy_gd_matches_exact_laws():
    "4,000 simulated chains on a quadratic: empirical mean and covariance equal the exact recursion to Monte-Carlo accuracy."
    X, A, H, M, eta, temp, step = _quadratic_laws(7)
    d = X.shape[1]; xb = X.mean(0)
    mu, S = np.zeros(d), np.zeros((d, d))
    for _ in range(50): mu, S = step(mu, S, xb)
    Ht, b = torch.tensor(H), torch.tensor(A @ xb)
    th = noisy_gd(lambda t: t @ Ht.T - b, torch.zeros(4000, d, dtype=torch.float64), 50, eta, temp, make_generator(0))
    emp_mu, emp_S = th.mean(0).numpy(), np.cov(th.numpy().T)
    se = np.sqrt(np.diag(S) / 4000)
    assert (np.abs(emp_mu - mu) < 5 * se).all()
    np.testing.assert_allclose(emp_S, S, atol=0.15 * np.abs(S).max())
    assert gaussian_renyi(emp_mu, emp_S, mu, S, 2) < 0.01
    with pytest.raises(BadValueError, match='lr=0'): noisy_gd(lambda t: t, th, 1, 0, temp, make_generator(0))

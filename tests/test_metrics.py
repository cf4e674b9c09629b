"Tests of unlearnrepro.metrics: hand computations, limiting cases and bad input."
import math, tempfile, warnings
import numpy as np
import pytest
import torch, torch.nn as nn
from scipy import stats
from unlearnrepro.core import BadValueError, UnknownNameError, Cache
from unlearnrepro.data import TensorData
from unlearnrepro.models import create_model, train, Recipe
from unlearnrepro.metrics import *

# three examples: correct and fairly confident / wrong and confident / uniform
P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [1/3, 1/3, 1/3]])
Y = np.array([0, 2, 1])


# ---------------------------------------------------------------- MIA features
def test_correctness_and_confidence():
    np.testing.assert_array_equal(mia_features(P, Y, 'correctness'), [1, 0, 0])
    np.testing.assert_allclose(mia_features(P, Y, 'confidence'), [0.7, 0.1, 1/3])


def test_entropy():
    h = [-(0.7*math.log(0.7) + 0.2*math.log(0.2) + 0.1*math.log(0.1)),
         -(2*0.1*math.log(0.1) + 0.8*math.log(0.8)), math.log(3)]
    np.testing.assert_allclose(mia_features(P, Y, 'entropy'), h, rtol=1e-12)


def test_m_entropy_formula():
    "Mentr(p, y) = -(1-p_y) log p_y - sum_{i != y} p_i log(1 - p_i), written out per row."
    def mentr(p, y):
        return -(1 - p[y]) * math.log(p[y]) - sum(p[i] * math.log(1 - p[i]) for i in range(len(p)) if i != y)
    got = mia_features(P, Y, 'm_entropy')
    np.testing.assert_allclose(got, [mentr(p, y) for p, y in zip(P, Y)], rtol=1e-12)
    assert abs(got[0] - 0.1622) < 1e-4  # the notes' test case
    assert abs(got[0] - 0.6591) > 0.4  # not the Unlearn-Sparse / SalUn / RUM value
    assert got[0] < got[2] < got[1]  # confident correct < uniform < confident wrong


def test_m_entropy_torch_input_and_clamp():
    got = mia_features(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]), 'm_entropy')
    np.testing.assert_allclose(got, [2 * math.log(1e30), 0.0])


def test_prob_and_unknown_kind():
    assert mia_features(P, Y, 'prob').shape == (3, 3)
    with pytest.raises(UnknownNameError, match="unknown MIA feature 'loss'"):
        mia_features(P, Y, 'loss')


# ---------------------------------------------------------------- SVC MIA
def test_svc_mia_separable():
    rng = np.random.default_rng(0)
    mem, non = rng.uniform(0.9, 1.0, 60), rng.uniform(0.0, 0.1, 60)
    assert svc_mia(mem, non, rng.uniform(0.0, 0.1, 25)) == 1.0
    assert svc_mia(mem, non, rng.uniform(0.9, 1.0, 25)) == 0.0


def test_svc_mia_identical_distributions_near_base_rate():
    rng = np.random.default_rng(1)
    vals = [svc_mia(rng.normal(size=150), rng.normal(size=150), rng.normal(size=150)) for _ in range(3)]
    assert 0.25 < np.mean(vals) < 0.75, vals


def test_svc_mia_multidimensional():
    rng = np.random.default_rng(2)
    mem = np.c_[rng.uniform(0.9, 1, 40), rng.uniform(0, 0.1, 40)]
    non = np.c_[rng.uniform(0, 0.1, 40), rng.uniform(0.9, 1, 40)]
    assert svc_mia(mem, non, non[:10]) == 1.0


def _outputs(probs, y):
    return dict(probs=torch.as_tensor(probs, dtype=torch.float32), y=torch.as_tensor(y))


def test_population_mia_from_outputs():
    rng = np.random.default_rng(3)
    def confident(n, c):  # members: p_y ~ 0.95
        p = np.full((n, 2), 0.05); p[np.arange(n), c] = 0.95; return p
    def unsure(n, c):
        p = np.full((n, 2), 0.4); p[np.arange(n), c] = 0.6; return p
    yr, yt, yf = rng.integers(0, 2, 200), rng.integers(0, 2, 50), rng.integers(0, 2, 20)
    outs = dict(retain=_outputs(confident(200, yr), yr), test=_outputs(unsure(50, yt), yt))
    outs['forget'] = _outputs(unsure(20, yf), yf)
    assert population_mia(outs) == {'confidence': 1.0}
    outs['forget'] = _outputs(confident(20, yf), yf)
    assert population_mia({'outputs': outs}, features=['confidence', 'correctness'])['confidence'] == 0.0
    with pytest.raises(BadValueError, match="no split 'val'"):
        population_mia(outs, test='val')


def test_shadow_members_label_balanced():
    yr, yt = np.repeat(np.arange(3), [40, 30, 30]), np.repeat(np.arange(3), [5, 10, 5])
    s = shadow_members(yr, yt, seed=0)
    np.testing.assert_array_equal(np.bincount(yr[s]), [5, 10, 5])
    np.testing.assert_array_equal(s, shadow_members(yr, yt, seed=0))
    np.testing.assert_array_equal(shadow_members(yr, yt, sampling='first'), np.arange(20))
    with pytest.raises(BadValueError, match='smaller than the test set'):
        shadow_members(yt, yr)


# ---------------------------------------------------------------- loss MIA, KS
def test_loss_mia_auc_and_ks():
    rng = np.random.default_rng(0)
    assert loss_mia_auc(rng.uniform(0, 1, 50), rng.uniform(2, 3, 200)) == pytest.approx(1.0)
    assert 0.5 <= loss_mia_auc(rng.exponential(size=200), rng.exponential(size=200), seed=1) < 0.6
    assert ks_distance([1, 2, 3, 4], [3.5, 5, 6, 7]) == pytest.approx(0.75)
    assert ks_distance([1, 2], [1, 2]) == 0.0


# ---------------------------------------------------------------- gaps, ToW, CI
def test_gaps():
    u = dict(forget_acc=0.9, test_acc=0.95, mia_confidence=0.2)
    rt = dict(forget_acc=0.95, test_acc=0.96, mia_confidence=0.1)
    g = gaps(u, rt)
    assert g['forget_acc'] == pytest.approx(-0.05) and g['mia_confidence'] == pytest.approx(0.1)
    assert g['avg_gap'] == pytest.approx((0.05 + 0.01 + 0.1) / 3)
    assert gaps(u, rt, signed=False)['forget_acc'] == pytest.approx(0.05)
    assert gaps(u, [rt, dict(rt, forget_acc=0.85)])['forget_acc'] == pytest.approx(0.0)
    with pytest.raises(BadValueError, match='only oracle'):
        gaps(dict(forget_acc=0.9), rt)


def test_tow():
    acc = dict(forget=0.9, retain=0.99, test=0.95)
    assert tow(acc, acc) == 1.0
    assert tow((0.8, 0.98, 0.90), (0.9, 1.0, 0.95)) == pytest.approx(0.9 * 0.98 * 0.95)
    assert tow_mia(0.3, 0.1, (0.8, 0.98, 0.90), (0.9, 1.0, 0.95)) == pytest.approx(0.8 * 0.98 * 0.95)
    assert tow_mia(0.4, 0.4, acc, acc) == 1.0


@pytest.mark.parametrize('vals,conf', [([0.81, 0.85, 0.83], 0.95), ([1., 2, 4, 8, 9], 0.9), ([0.1, 0.2], 0.99)])
def test_mean_ci_vs_scipy(vals, conf):
    m, h = mean_ci(vals, conf)
    lo, hi = stats.t.interval(conf, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert m == pytest.approx(np.mean(vals)) and h == pytest.approx((hi - lo) / 2, rel=1e-12)


# ---------------------------------------------------------------- loss barrier
def _toy_data(n=120, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, d, d, generator=g)
    return TensorData(x, (x.flatten(1)[:, :k].argmax(1)))


def test_barrier_same_endpoint_is_zero():
    data = _toy_data()
    for name in ('mlp', 'cnn_small'):
        m = create_model(name, 1, 3, 8, seed=0)
        sd = m.state_dict()
        assert loss_barrier(m, sd, sd, data, n_points=5)['barrier'] == 0.0


def test_barrier_convex_model():
    data = _toy_data()
    a = train(create_model('mlp', 1, 3, 8, seed=0, hidden=()), data, Recipe(epochs=3, lr=0.1), seed=0)[0]
    b = train(create_model('mlp', 1, 3, 8, seed=1, hidden=()), data, Recipe(epochs=3, lr=0.1), seed=1)[0]
    r = loss_barrier(a, a.state_dict(), b.state_dict(), data, n_points=11, per_example=True)
    assert r['barrier'] <= 1e-6 and (r['gap'] <= 1e-6).all() and (r['per_example'] <= 1e-6).all()
    assert r['per_example'].shape == (len(data),) and r['example_losses'].shape == (11, len(data))
    assert len(r['gammas']) == 11 and r['gammas'][0] == 0 and r['gammas'][-1] == 1


def test_barrier_bn_recalibration_changes_curve():
    data = _toy_data(n=64)
    a, b = create_model('cnn_small', 1, 3, 8, seed=0, width=4), create_model('cnn_small', 1, 3, 8, seed=1, width=4)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    on = loss_barrier(a, a.state_dict(), b.state_dict(), data, n_points=5)
    off = loss_barrier(a, a.state_dict(), b.state_dict(), data, n_points=5, recalibrate_bn=False)
    assert not torch.allclose(on['losses'], off['losses'])
    for k, v in a.state_dict().items(): assert torch.equal(v, before[k])  # no side effect on the model
    assert all(m.momentum == 0.1 for m in a.modules() if isinstance(m, nn.BatchNorm2d))
    assert a.training  # train/eval flag restored (a fresh model is in train mode)


def test_recalibrate_bn_stats_matches_update_bn():
    data = _toy_data(n=64)
    m = create_model('cnn_small', 1, 3, 8, seed=0, width=4)
    t = recalibrate_bn_stats(m, dict(m.named_parameters()), data, batch_size=16)
    ref = create_model('cnn_small', 1, 3, 8, seed=0, width=4)
    loader = [(data.x[i:i + 16],) for i in range(0, 64, 16)]
    torch.optim.swa_utils.update_bn(loader, ref)
    for k, v in ref.state_dict().items():
        if 'running' in k: assert torch.allclose(t[k], v, atol=1e-6), k


# ---------------------------------------------------------------- epsilon score
def test_logit_confidence():
    z = torch.tensor([[2.0, 1.0, 0.0], [80.0, 0.0, 0.0]])
    s = logit_confidence(z, [0, 0])
    p = z.double().softmax(1)[0, 0].item()
    assert s[0] == pytest.approx(math.log(p / (1 - p)))
    assert s[1] == pytest.approx(80 - math.log(2))


def test_epsilon_identical():
    a = np.random.default_rng(0).normal(size=(8, 40))
    r = epsilon_score(a, a.copy())
    assert (r['eps'] == 0).all() and r['F'] == 1.0 and r['final'] == 1.0


def test_epsilon_separated():
    rng = np.random.default_rng(1)
    r = epsilon_score(rng.normal(6, 1, (8, 10)), rng.normal(-6, 1, (8, 10)))
    assert (r['eps'] == 50).all() and r['F'] == 0.0


def test_epsilon_hand_case():
    "N = 4: unlearned {0,1,2,3}, oracle {2,3,4,5}; best rule t in (2,3]: FPR = FNR = 1/4 -> log 3, bin 2 of 4."
    r = epsilon_score(np.array([[0.], [1], [2], [3]]), np.array([[2.], [3], [4], [5]]))
    assert r['eps'][0] == pytest.approx(math.log((0.75 - 1e-5) / 0.25))
    assert r['n_bins'] == 4 and r['F'] == 0.25


def test_epsilon_order_invariance_and_ratios():
    rng = np.random.default_rng(2)
    u, rt = rng.normal(0.7, 1, (8, 25)), rng.normal(0, 1, (8, 25))
    perm = rng.permutation(25)
    r, rp = epsilon_score(u, rt), epsilon_score(u[:, perm], rt[:, perm])
    np.testing.assert_array_equal(rp['eps'], r['eps'][perm])
    assert rp['F'] == r['F']
    assert epsilon_score(u, rt, retain_acc_ratio=0.5, test_acc_ratio=0.8)['final'] == pytest.approx(r['F'] * 0.4)


# ---------------------------------------------------------------- bad input
def test_bad_probs():
    with pytest.raises(BadValueError, match='sums to'):
        mia_features([[0.5, 0.6]], [0], 'confidence')
    with pytest.raises(BadValueError, match='one label per row'):
        mia_features(P, Y[:2], 'confidence')
    with pytest.raises(BadValueError, match='out of range'):
        mia_features(P, [0, 1, 3], 'confidence')


def test_bad_shapes():
    with pytest.raises(BadValueError, match='feature dimensions differ'):
        svc_mia(np.zeros((4, 2)), np.zeros((4, 1)), np.zeros((2, 1)))
    with pytest.raises(BadValueError, match='differ in shape'):
        epsilon_score(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(BadValueError, match='different names|not a parameter'):
        m = create_model('mlp', 1, 3, 8, seed=0)
        loss_barrier(m, dict(m.named_parameters()), {'1.weight': m.state_dict()['1.weight']}, _toy_data())


def test_empty_forget_set():
    with pytest.raises(BadValueError, match='empty'):
        svc_mia([0.1, 0.2], [0.3, 0.4], [])
    with pytest.raises(BadValueError, match='forget set is empty'):
        epsilon_score(np.zeros((4, 0)), np.zeros((4, 0)))
    with pytest.raises(BadValueError, match='forget_losses is empty'):
        loss_mia_auc([], [0.1] * 10)
    m = create_model('mlp', 1, 3, 8, seed=0)
    with pytest.raises(BadValueError, match="split 'forget' is empty"):
        evaluate(m, dict(forget=_toy_data().subset([])))


def test_too_few_models():
    with pytest.raises(BadValueError, match='N >= 2'):
        epsilon_score(np.zeros((1, 5)), np.zeros((1, 5)))


def test_bad_accuracies():
    with pytest.raises(BadValueError, match='not percentages'):
        tow((90, 99, 95), (0.9, 0.99, 0.95))
    with pytest.raises(BadValueError, match='3 accuracies'):
        tow((0.9, 0.99), (0.9, 0.99, 0.95))


# ---------------------------------------------------------------- evaluate
def test_evaluate_cache():
    data = _toy_data(n=50)
    m = create_model('mlp', 1, 3, 8, seed=0)
    c = Cache(tempfile.mkdtemp())
    r1 = evaluate(m, dict(a=data, b=data.subset(range(10))), cache=c)
    r2 = evaluate(m, dict(a=data, b=data.subset(range(10))), cache=c)
    assert (c.hits, c.misses) == (2, 2) and r1['acc'] == r2['acc']
    assert r1['outputs']['a']['probs'].dtype == torch.float32
    assert r1['loss']['a'] == pytest.approx(r1['outputs']['a']['loss'].mean().item())
    with torch.no_grad(): m[1].weight.add_(1.0)
    evaluate(m, dict(a=data), cache=c)
    assert c.misses == 3  # a changed model is recomputed


def test_loss_mia_auc_never_below_chance_and_scale_free():
    """Under the null the out-of-fold AUC scatters around 0.5: it is never reported below it. Rescaling the losses leaves
    the AUC as it is (one threshold is as good as another), and a heavy tail added to the test losses (one in a hundred
    multiplied by 10^4, where the raw-loss fit lost its direction) leaves it at the share of pairs it should be."""
    rng = np.random.default_rng(3)
    for s in range(10):
        assert loss_mia_auc(rng.exponential(size=100), rng.exponential(size=100), seed=s) >= 0.5
    f, t = rng.lognormal(0, 1, 400), rng.lognormal(-1, 1, 400)
    base = loss_mia_auc(f, t)
    assert loss_mia_auc(f * 1e-3, t * 1e-3) == pytest.approx(base, abs=1e-9)
    t2 = t.copy(); t2[::100] *= 1e4
    pairs = stats.mannwhitneyu(f, t2).statistic / (len(f) * len(t2))
    assert loss_mia_auc(f, t2) == pytest.approx(pairs, abs=0.03) and pairs > 0.6


@pytest.mark.parametrize('kind', ['confidence', 'entropy', 'm_entropy'])
def test_svc_mia_keeps_its_answer_under_a_heavy_tail(kind):
    """The loss attack's failure mode, checked on the SVC attack: a few extreme feature values among the non-member
    shadows (1 in 100 test examples predicted with true-class probability 1e-25, where `m_entropy` is near its clamp)
    must not change what the attack says about a forget set that looks like members (about 0 called non-members) or like
    non-members (about 1). The features are bounded or clamped, and the RBF SVC learns no single global direction."""
    rng = np.random.default_rng(0); C, n = 10, 400
    def probs(py):  # true class 0 with probability py, the rest spread evenly
        p = np.tile((1 - py)[:, None] / (C - 1), (1, C)); p[:, 0] = py; return p
    members, nonmembers = probs(rng.uniform(0.97, 0.999, n)), probs(rng.uniform(0.3, 0.6, n))
    heavy = nonmembers.copy(); heavy[::100] = probs(np.full(len(heavy[::100]), 1e-25))
    f = lambda p: mia_features(p, np.zeros(len(p), dtype=np.int64), kind)  # every example of class 0
    for shadow_out in (nonmembers, heavy):
        assert svc_mia(f(members), f(shadow_out), f(probs(rng.uniform(0.97, 0.999, 200)))) < 0.05  # looks like members
        assert svc_mia(f(members), f(shadow_out), f(probs(rng.uniform(0.3, 0.6, 200)))) > 0.95  # looks like non-members

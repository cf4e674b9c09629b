"Memorization chapter beyond the notebook: the estimator by hand, NaN accounting, input checks, curvature against a closed form, early stopping, caching and costs."
import math, warnings
import numpy as np
import pytest
import torch, torch.nn as nn, torch.nn.functional as F
from scipy import stats
from unlearnrepro.core import Cache, BadValueError, UnknownNameError, get_device
from unlearnrepro.data import load_dataset, TensorData
from unlearnrepro.models import Recipe, RECORDERS, fit, model_for, predict
import unlearnrepro.memorization as M
from unlearnrepro.memorization import (estimate_memorization, heldout_accuracy, subset_runs, included_matrix, spearman,
    spearman_brown, noise_ceiling, cost_dict, memorization_scores, event_proxies, symmetric_kl, holdout_retraining,
    loss_curvature, input_grads, el2n, early_difficulty, SCORES, score_sign, memorization_like, make_score, ScoreSetup,
    compute_score, compute_scores, register_score)

MLP = {'name': 'mlp', 'hidden': [16]}
RECIPE = Recipe(epochs=3, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, schedule='constant')


@pytest.fixture(scope='module')
def dig():
    return load_dataset('digits', n_train=300, n_test=100, n_val=60, label_noise=0.05)


# ---------- the estimator ----------

def test_estimator_by_hand():
    "K = 4 runs, N = 3 examples, every mean computed by hand."
    I = np.array([[1, 0, 1],
                  [1, 1, 0],
                  [0, 1, 0],
                  [0, 0, 1]], bool)
    C = np.array([[1, 0, 1],
                  [1, 1, 1],
                  [1, 0, 0],
                  [0, 1, 1]], bool)
    # ex 0: in runs 0,1 (1,1) -> 1;   out runs 2,3 (1,0) -> 1/2;  mem 1/2
    # ex 1: in runs 1,2 (1,0) -> 1/2; out runs 0,3 (0,1) -> 1/2;  mem 0
    # ex 2: in runs 0,3 (1,1) -> 1;   out runs 1,2 (1,0) -> 1/2;  mem 1/2
    np.testing.assert_allclose(estimate_memorization(I, C), [0.5, 0.0, 0.5])
    np.testing.assert_allclose(heldout_accuracy(I, C), [0.5, 0.5, 0.5])
    # 0/1 integers are accepted and give the same answer as booleans
    np.testing.assert_allclose(estimate_memorization(I.astype(int), C.astype(np.uint8)), [0.5, 0.0, 0.5])


def test_estimator_nan_and_count():
    I = np.array([[1, 0, 1, 1], [1, 0, 0, 1]], bool)  # ex 0, 3: never held out; ex 1: never trained on
    C = np.ones_like(I)
    with pytest.warns(RuntimeWarning, match='2 of 4 examples were never held out and 1 never trained on in 2 runs'):
        mem = estimate_memorization(I, C)
    assert np.isnan(mem[[0, 1, 3]]).all() and mem[2] == 0.0
    assert np.isnan(heldout_accuracy(I, C)[[0, 3]]).all()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        estimate_memorization(I, C, warn=False)  # no warning
        estimate_memorization(np.array([[1, 0], [0, 1]], bool), np.ones((2, 2), bool))  # all defined: no warning


@pytest.mark.parametrize('I,C,msg', [
    (np.ones(3, bool), np.ones(3, bool), 'K x N arrays of the same shape, got (3,) and (3,)'),
    (np.ones((2, 3), bool), np.ones((3, 2), bool), 'got (2, 3) and (3, 2)'),
    (np.zeros((0, 3), bool), np.zeros((0, 3), bool), 'are empty'),
    (np.full((2, 2), 2), np.ones((2, 2), bool), 'included must hold booleans (or 0/1), got dtype int'),
    (np.ones((2, 2), bool), np.full((2, 2), 0.5), 'correct must hold booleans'),
    (np.ones((2, 2), bool), np.array([['a', 'b'], ['c', 'd']]), 'correct must hold booleans'),
])
def test_estimator_rejects(I, C, msg):
    with pytest.raises(BadValueError) as e: estimate_memorization(I, C)
    assert msg in str(e.value)


def test_estimator_matches_definition_on_random_matrices():
    "Vectorised estimate = the per-example definition (a loop over examples and runs)."
    rng = np.random.default_rng(3)
    I, C = rng.random((30, 50)) < 0.7, rng.random((30, 50)) < 0.6
    loop = [C[I[:, i], i].mean() - C[~I[:, i], i].mean() for i in range(50)]
    np.testing.assert_allclose(estimate_memorization(I, C), loop)


# ---------- runs, correlations, noise ceiling ----------

def test_subset_runs():
    runs = subset_runs(50, 10, 0.7, seed=0)
    assert all(len(r['positions']) == 35 and len(np.unique(r['positions'])) == 35 for r in runs)
    assert all(0 <= r['positions'].min() and r['positions'].max() < 50 for r in runs)
    assert len({r['seed'] for r in runs}) == 10 and all(0 <= r['seed'] < 2**31 for r in runs)
    # prefix-stable: the first 4 of k = 10 are the runs of k = 4; another seed gives other runs
    for a, b in zip(subset_runs(50, 4, 0.7, seed=0), runs): np.testing.assert_array_equal(a['positions'], b['positions'])
    assert not np.array_equal(subset_runs(50, 1, 0.7, seed=1)[0]['positions'], runs[0]['positions'])
    I = included_matrix(runs, 50)
    assert I.shape == (10, 50) and (I.sum(1) == 35).all()
    # seed 0 is a seed like any other (RUM's `if args.seed:` skipped it): runs are reproducible
    np.testing.assert_array_equal(subset_runs(50, 2, 0.7, 0)[1]['positions'], subset_runs(50, 2, 0.7, 0)[1]['positions'])


@pytest.mark.parametrize('kw,msg', [
    (dict(n=50, k=0), 'k=0 is not allowed'), (dict(n=50, k=3, frac=0), 'frac=0'), (dict(n=50, k=3, frac=1), 'frac=1'),
    (dict(n=50, k=3, seed=-1), 'seed=-1'), (dict(n=1, k=3), 'n=1'), (dict(n=4, k=3, frac=0.05), 'gives subsets of 0 examples'),
    (dict(n=4, k=3, frac=0.95), 'gives subsets of 4 examples'), (dict(n=50, k=2.0), 'k=2.0'),
])
def test_subset_runs_rejects(kw, msg):
    with pytest.raises(BadValueError) as e: subset_runs(**kw)
    assert msg in str(e.value)


def test_spearman_and_brown():
    a, b = np.array([1., 2, 3, 4, np.nan]), np.array([2., 4, 5, 9, 1])
    assert spearman(a, b) == pytest.approx(1.0)  # the NaN pair is dropped
    assert spearman(a, -b) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4]))  # constant: undefined
    assert math.isnan(spearman([1, 2], [1, 2]))
    x = np.random.default_rng(0).random(40); y = x + np.random.default_rng(1).random(40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    with pytest.raises(BadValueError, match='one length, got 3 and 2'): spearman([1, 2, 3], [1, 2])
    assert spearman_brown(0.5) == pytest.approx(2 / 3) and spearman_brown(0.0) == 0.0 and spearman_brown(1.0) == 1.0
    assert math.isnan(spearman_brown(-1.0))


def test_noise_ceiling():
    "Deterministic 'models': examples 0..19 are memorized (right iff trained on), the rest always right -> identical halves."
    rng = np.random.default_rng(0)
    I = rng.random((40, 60)) < 0.7
    C = np.ones_like(I); C[:, :20] = I[:, :20]
    C[:, 20:40] = rng.random((40, 20)) < 0.5  # and some examples of pure noise, so the ranks are not all tied
    nc = noise_ceiling(I, C, seed=0)
    assert nc['runs_per_half'] == 20 and 0 < nc['r'] <= 1 and nc['ceiling'] == pytest.approx(spearman_brown(nc['r']))
    assert nc['ceiling'] >= nc['r']
    # pure noise: the ceiling is near 0
    Cn = rng.random((40, 60)) < 0.5
    assert abs(noise_ceiling(I, Cn, seed=0)['r']) < 0.4
    with pytest.raises(BadValueError, match='at least 2 runs'): noise_ceiling(I[:1], C[:1])


def test_cost_dict():
    assert cost_dict() == dict(examples=0, forward=0, steps=0)
    c = cost_dict(examples=300, forward=90, steps=3, epochs=10, n=10)
    assert c['trainings'] == pytest.approx((300 + 30) / 100)


# ---------- memorization driver ----------

def test_memorization_scores_cache_and_cost(dig, tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    est = memorization_scores(dig, MLP, RECIPE, k=6, cache=cache)
    n, m = len(dig.train), round(0.7 * len(dig.train))
    assert est.included.shape == est.correct.shape == (6, n) and (est.included.sum(1) == m).all()
    assert est.memorization.shape == (n,) and np.nanmax(np.abs(est.memorization)) <= 1
    assert est.cost['examples'] == 6 * RECIPE.epochs * m and est.cost['forward'] == 6 * n
    assert est.cost['steps'] == 6 * RECIPE.epochs * math.ceil(m / RECIPE.batch_size)
    assert est.cost['trainings'] == pytest.approx((6 * 3 * m + 6 * n / 3) / (3 * n))
    assert est.n_undefined == int(np.isnan(est.memorization).sum())
    # a second call reads the matrices back: nothing is trained
    def boom(*a, **k): raise AssertionError('fit_many must not run on a cache hit')
    monkeypatch.setattr(M, 'fit_many', boom)
    again = memorization_scores(dig, MLP, RECIPE, k=6, cache=cache)
    np.testing.assert_array_equal(again.correct, est.correct)
    np.testing.assert_array_equal(again.memorization, est.memorization)
    with pytest.raises(AssertionError, match='must not run'): memorization_scores(dig, MLP, RECIPE, k=7, cache=cache)  # new key
    with pytest.raises(BadValueError, match='k=1 is not allowed'): memorization_scores(dig, MLP, RECIPE, k=1)


def test_memorization_correct_matrix_is_eval_mode_argmax(dig):
    "Row k of C is the eval-mode correctness of run k's model, retrained alone with its seed and positions."
    est = memorization_scores(dig, MLP, RECIPE, k=2, backend='serial')
    run = subset_runs(len(dig.train), 2, 0.7, 0)[1]
    m, _ = fit(dig, MLP, RECIPE, seed=run['seed'], positions=run['positions'])
    np.testing.assert_array_equal(est.correct[1], predict(m, dig.train)['correct'].numpy())
    np.testing.assert_array_equal(est.included[1], included_matrix([run], len(dig.train))[0])


# ---------- proxies ----------

def test_event_proxies():
    ev = dict(confidence=torch.tensor([0.5]), max_confidence=torch.tensor([0.9]), neg_entropy=torch.tensor([-0.3]), accuracy=torch.tensor([1.0]))
    out = event_proxies(ev)
    assert set(out) == {'confidence', 'max_confidence', 'neg_entropy', 'binary_accuracy'} and out['binary_accuracy'][0] == 1.0
    with pytest.raises(BadValueError, match="lacks \\['accuracy'\\]"): event_proxies({k: v for k, v in ev.items() if k != 'accuracy'})


def test_symmetric_kl_against_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    want = 0.5 * (stats.entropy(p, q, axis=1) + stats.entropy(q, p, axis=1))
    np.testing.assert_allclose(symmetric_kl(torch.tensor(p), torch.tensor(q)).numpy(), want, rtol=1e-10)
    z = symmetric_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(z).all() and z.item() == pytest.approx((1 - 1e-10) * math.log(1e10))
    # a larger clamp shrinks the score of confident disagreements
    assert symmetric_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), eps=1e-3).item() < z.item()
    with pytest.raises(BadValueError, match='one shape'): symmetric_kl(torch.ones(2, 3) / 3, torch.ones(2, 2) / 2)


def test_holdout_early_stopping(dig):
    "A learning rate too small to move float32 weights: the summed loss never improves after epoch 1 -> stop after 1 + patience epochs, scores 0."
    m, _ = fit(dig, MLP, RECIPE, seed=0)
    one = dig.val.subset([0])  # one example, batch 1: the same loss, bit for bit, every epoch
    s, info = holdout_retraining(m, dig, heldout=one, lr=1e-30, patience=2, batch_size=1)
    assert info['epochs'] == 3 and info['stopped_early'] and len(set(info['losses'])) == 1
    np.testing.assert_array_equal(s, np.zeros(len(dig.train)))
    assert info['cost'] == dict(examples=3, forward=2 * len(dig.train), steps=3)
    # the model passed in is not modified
    before = {k: v.clone() for k, v in m.state_dict().items()}
    s, info = holdout_retraining(m, dig, max_epochs=2)
    assert info['epochs'] == 2 and not info['stopped_early'] and s.shape == (len(dig.train),) and (s >= 0).all()
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k])


@pytest.mark.parametrize('kw,msg', [(dict(patience=0), 'patience=0'), (dict(max_epochs=0), 'max_epochs=0'), (dict(lr=0), 'lr=0')])
def test_holdout_rejects(dig, kw, msg):
    m = model_for(dig, MLP, seed=0)
    with pytest.raises(BadValueError, match=msg): holdout_retraining(m, dig, **kw)
    with pytest.raises(BadValueError, match='data.val is None'): holdout_retraining(m, load_dataset('digits', n_train=50, n_test=20))


@pytest.mark.parametrize('y', [0, 1])
def test_curvature_closed_form(y):
    "logits = [w x, 0] on a scalar input: dCE/dx = w (sigmoid(w x) - [y = 0]); z = h sign(g); curvature = |w (sigmoid(w (x + z)) - sigmoid(w x))|."
    w, h = 3.0, 0.01
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad(): lin.weight.copy_(torch.tensor([[w], [0.0]]))
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.linspace(-1, 1, 7).reshape(7, 1, 1, 1); yy = torch.full((7,), y)
    g = w * (torch.sigmoid(w * x.flatten()) - (1.0 if y == 0 else 0.0))
    torch.testing.assert_close(input_grads(model, x, yy).flatten(), g)
    want = (w * (torch.sigmoid(w * (x.flatten() + h * g.sign())) - torch.sigmoid(w * x.flatten()))).abs()
    torch.testing.assert_close(loss_curvature(model, TensorData(x, yy), h=h), want)


def test_curvature_batchnorm_eval_and_batch_invariance(dig):
    "With BatchNorm the curvature uses running statistics: the same value whatever the batch it is computed in; the mode is restored."
    net = model_for(dig, {'name': 'cnn_small', 'width': 4}, seed=0).train()
    d = dig.train.subset(range(10))
    a, b = loss_curvature(net, d, batch_size=1), loss_curvature(net, d, batch_size=10)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert net.training and (a > 0).all()
    with pytest.raises(BadValueError, match='h=0'): loss_curvature(net, d, h=0)


def test_curvature_recorder(dig):
    assert 'curvature' in RECORDERS
    m, run = fit(dig, MLP, RECIPE, seed=0, record={'curvature': {'epochs': [0, 3]}})
    r = run['records']['curvature']
    assert r['epochs'].tolist() == [0, 3] and r['per_epoch'].shape == (2, len(dig.train))
    torch.testing.assert_close(r['per_epoch'][0], loss_curvature(model_for(dig, MLP, seed=0), dig.train))
    torch.testing.assert_close(r['per_epoch'][1], loss_curvature(m, dig.train))
    torch.testing.assert_close(r['curvature'], r['per_epoch'].mean(0))
    with pytest.raises(BadValueError, match='curvature epoch=4'): fit(dig, MLP, RECIPE, record={'curvature': {'epochs': [4]}})
    _, run = fit(dig, MLP, RECIPE, seed=0, record={'curvature': {}})  # default: every epoch
    assert run['records']['curvature']['epochs'].tolist() == [1, 2, 3]


def test_early_difficulty(dig, tmp_path):
    "Epoch 0 = the initialisations: EL2N / GraNd are those of the fresh models, and nothing is trained (cost)."
    ed = early_difficulty(dig, MLP, RECIPE, epoch=0, seeds=[0, 5])
    ms = [model_for(dig, MLP, seed=s).to(get_device()) for s in (0, 5)]  # where early_difficulty computes: one device on both sides
    np.testing.assert_allclose(ed['el2n'], torch.stack([el2n(m, dig.train) for m in ms]).mean(0).numpy(), rtol=1e-6)
    assert ed['cost']['el2n'] == dict(examples=0, forward=2 * len(dig.train), steps=0)
    assert ed['cost']['grand'] == dict(examples=2 * len(dig.train), forward=0, steps=0)
    # default: 10 % of the epochs, at least 1; cached
    c = Cache(tmp_path)
    e1 = early_difficulty(dig, MLP, RECIPE, seeds=[0], cache=c)
    e2 = early_difficulty(dig, MLP, RECIPE, seeds=[0], cache=c)
    assert e1['epoch'] == 1 and (c.hits, c.misses) == (1, 1)
    np.testing.assert_array_equal(e1['grand'], e2['grand'])
    with pytest.raises(BadValueError, match='seeds is empty'): early_difficulty(dig, MLP, RECIPE, seeds=[])
    with pytest.raises(BadValueError, match='seed=-1'): early_difficulty(dig, MLP, RECIPE, seeds=[-1])


def test_el2n_by_hand():
    lin = nn.Linear(1, 2, bias=True)
    with torch.no_grad(): lin.weight.zero_(); lin.bias.copy_(torch.tensor([math.log(3.0), 0.0]))  # p = (3/4, 1/4) for every x
    model = nn.Sequential(nn.Flatten(), lin)
    d = TensorData(torch.zeros(2, 1, 1, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(el2n(model, d), torch.tensor([math.sqrt(2) / 4, math.sqrt(2) * 3 / 4]))


# ---------- scores ----------

def test_signs_and_names():
    minus = {'confidence', 'max_confidence', 'neg_entropy', 'binary_accuracy', 'cscore'}
    plus = {'holdout_retraining', 'curvature', 'el2n', 'grand', 'forgetting_events', 'final_loss', 'memorization'}
    assert set(SCORES.names()) == minus | plus
    assert all(score_sign(n) == -1 for n in minus) and all(score_sign(n) == 1 for n in plus)
    with pytest.raises(UnknownNameError, match="unknown score 'speed'; choose one of: binary_accuracy, "): score_sign('speed')
    with pytest.raises(BadValueError, match='sign=0'): register_score('x', 0, 'nothing')


def test_memorization_like_and_make_score():
    np.testing.assert_array_equal(memorization_like('binary_accuracy', [1.0, 0.25]), [-1.0, -0.25])
    np.testing.assert_array_equal(memorization_like('el2n', [1.0, 0.25], n=2), [1.0, 0.25])
    with pytest.raises(BadValueError, match="score 'el2n' has 2 values \\(shape \\(2,\\)\\) but the training set has 3 examples"):
        memorization_like('el2n', [1.0, 0.25], n=3)
    with pytest.raises(BadValueError, match='shape \\(2, 2\\)'): make_score('curvature', np.zeros((2, 2)), 4)
    with pytest.raises(UnknownNameError): make_score('loss', np.zeros(4), 4)
    s = make_score('confidence', [0.9, 0.1, np.nan], 3, cost_dict(forward=3), epochs=2)
    assert s.sign == -1 and np.isnan(s.memorization_like[2]) and s.cost['trainings'] == pytest.approx(1 / 6)
    np.testing.assert_array_equal(s.memorization_like[:2], [-0.9, -0.1])


def test_all_scores_small(dig, tmp_path):
    "Every registered score at a toy scale: one value per training example, the sign applied, the costs as documented."
    setup = ScoreSetup(dig, MLP, RECIPE, cache=Cache(tmp_path), k=4, early={'epoch': 1, 'seeds': [0]}, holdout={'max_epochs': 2},
                       curvature={'every': 3})
    with pytest.raises(UnknownNameError, match="unknown score 'nope'"): compute_scores(setup, ['confidence', 'nope'])
    assert setup._memo == {}  # the unknown name failed before anything ran
    sc = compute_scores(setup)
    n = len(dig.train)
    for name, s in sc.items():
        assert s.values.shape == (n,) and s.sign == score_sign(name)
        np.testing.assert_array_equal(s.memorization_like, s.sign * s.values)
        assert {'examples', 'forward', 'steps', 'trainings'} <= set(s.cost)
    for name in ('confidence', 'max_confidence', 'neg_entropy', 'binary_accuracy', 'forgetting_events'):
        assert sc[name].cost['trainings'] == 0
    assert sc['curvature'].cost['examples'] == 2 * n * 1  # one recorded epoch (3)
    assert sc['final_loss'].cost == dict(examples=0, forward=n, steps=0, trainings=pytest.approx(1 / 9))
    assert sc['memorization'].cost == sc['cscore'].cost
    assert sc['holdout_retraining'].cost['examples'] == 2 * len(dig.val)
    ev = fit(dig, MLP, RECIPE, seed=0, record={'events': {}})[1]['records']['events']
    np.testing.assert_allclose(sc['confidence'].values, ev['confidence'].double().numpy())  # the recorders do not change training
    s2 = compute_score(setup, 'el2n')
    np.testing.assert_array_equal(s2.values, sc['el2n'].values)


def test_make_score_checks_the_name_first():
    "An unknown name with the wrong length: the error is the name (listing the known ones), not the length."
    with pytest.raises(UnknownNameError, match="unknown score 'conf'; choose one of: binary_accuracy, confidence, cscore"):
        make_score('conf', np.zeros(5), 200)


def _identical_halves(seed, N=40):
    "4 runs made of two runs repeated so that noise_ceiling(seed) puts one copy of each in each half."
    perm = np.random.default_rng(seed).permutation(4)
    rng = np.random.default_rng(seed + 100)
    Ih = rng.random((2, N)) < 0.5; Ih[1] = ~Ih[0]  # every example in exactly one of the two runs
    Ch = rng.random((2, N)) < 0.5
    I, C = np.zeros((4, N), bool), np.zeros((4, N), bool)
    I[perm[:2]], I[perm[2:]], C[perm[:2]], C[perm[2:]] = Ih, Ih, Ch, Ch
    return I, C

@pytest.mark.parametrize('seed', [0, 1, 7])
def test_noise_ceiling_of_identical_halves_is_one(seed):
    nc = noise_ceiling(*_identical_halves(seed), seed=seed)
    assert nc == dict(r=1.0, ceiling=1.0, runs_per_half=2)


def test_noise_ceiling_of_pure_noise_is_near_zero():
    "Correctness independent of inclusion: nothing to find. At N = 2000 the split-half r has sd ~ 1/sqrt(N) ~ 0.02."
    rng = np.random.default_rng(3)
    for s in range(3):
        I, C = rng.random((40, 2000)) < 0.7, rng.random((40, 2000)) < 0.5
        nc = noise_ceiling(I, C, seed=s)
        assert abs(nc['r']) < 0.1 and abs(nc['ceiling']) < 0.2, nc


def test_noise_ceiling_of_a_planted_signal_matches_spearman_brown():
    """p(correct) = p_out held out, p_out + m_i trained on (m_i ~ U(0, 0.8)), inclusion w.p. 1/2. A half of K/2 runs has
    ~K/4 runs in and out per example: estimate = m_i + noise of variance [p_in(1-p_in) + p_out(1-p_out)] / (K/4), so the
    split-half r = var(m) / (var(m) + mean noise variance), and the ceiling = its Spearman-Brown value = the correlation of
    the K-run estimate with that of an independent set of K runs."""
    rng = np.random.default_rng(11)
    K, N, p_out = 32, 3000, 0.1
    m = rng.uniform(0, 0.8, N); p_in = p_out + m
    def runs():
        I = rng.random((K, N)) < 0.5
        return I, rng.random((K, N)) < np.where(I, p_in, p_out)
    (I, C), (I2, C2) = runs(), runs()
    nc = noise_ceiling(I, C, seed=0)
    r_pred = m.var() / (m.var() + ((p_in * (1 - p_in) + p_out * (1 - p_out)) / (K / 4)).mean())
    assert nc['r'] == pytest.approx(r_pred, abs=0.05)
    assert nc['ceiling'] == pytest.approx(spearman_brown(r_pred), abs=0.05)
    replica = spearman(estimate_memorization(I, C, warn=False), estimate_memorization(I2, C2, warn=False))
    assert nc['ceiling'] == pytest.approx(replica, abs=0.05)
    assert nc['ceiling'] > nc['r'] + 0.1  # the correction matters here


def test_final_loss_known_answer():
    "Logits = inputs (identity layer): CE of (ln 3, 0) with y=0 is ln(4/3), y=1 ln 4; (0, 0) ln 2; (0, ln 9) with y=1 ln(10/9)."
    from unlearnrepro.data import DataBundle
    logits = torch.tensor([[math.log(3), 0.], [math.log(3), 0.], [0., 0.], [0., math.log(9)]])
    y = torch.tensor([0, 1, 0, 1])
    data = DataBundle('toy', TensorData(logits[:, None, None, :], y), TensorData(logits[:, None, None, :], y), 2, 1, 1, {'name': 'toy'})
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False)); nn.init.eye_(net[1].weight)
    class Fixed(ScoreSetup):
        def original(self): return net, {}
    s = compute_score(Fixed(data, {'name': 'mlp'}, RECIPE), 'final_loss')
    np.testing.assert_allclose(s.values, [math.log(4 / 3), math.log(4), math.log(2), math.log(10 / 9)], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(s.memorization_like, s.values)
    assert s.cost == dict(examples=0, forward=4, steps=0, trainings=pytest.approx(4 / 3 / (RECIPE.epochs * 4)))

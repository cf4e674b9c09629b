"The censored trend verdict against independent computations: lifelines' two-group log-rank test and a dense Efron partial likelihood."
import math, numpy as np, pytest
from scipy import stats, optimize
from unlearnrepro.core import BadValueError
from unlearnrepro.report import censored_trend_verdict, _logrank_trend


def _data(seed, n=40, beta=0.5, budget=60.0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, n).astype(float); g = rng.integers(0, 3, n)
    t = np.round(rng.exponential(10 * np.exp(beta * x)))  # integer steps, with ties
    e = t < budget
    return x, np.minimum(t, budget), e, g


def _efron_loglik(b, x, t, e, g):
    "Efron's partial log-likelihood of one covariate, summed over strata, written from the definition."
    ll = 0.0
    for s in np.unique(g):
        xs, ts, es = x[g == s], t[g == s], e[g == s]
        for tt in np.unique(ts[es]):
            risk = ts >= tt; dead = es & (ts == tt); d = int(dead.sum())
            r, dsum = np.exp(b * xs[risk]).sum(), np.exp(b * xs[dead]).sum()
            ll += b * xs[dead].sum() - sum(math.log(r - j / d * dsum) for j in range(d))
    return ll


@pytest.mark.parametrize('seed', [0, 1])
def test_cox_estimate_matches_a_dense_efron_fit(seed):
    x, t, e, g = _data(seed)
    v = censored_trend_verdict(x, t, e, strata=g, max_censored=1.0)
    # xatol is how far the float64 search narrows beta, not a tolerance on a float32 result: the comparison below is relative (1e-4),
    # and lifelines stops at its own convergence tolerance
    b = optimize.minimize_scalar(lambda b: -_efron_loglik(b, x, t, e, g), bounds=(-5, 5), method='bounded', options=dict(xatol=1e-10)).x
    assert math.isclose(-v.effect, b, rel_tol=1e-4, abs_tol=1e-6), (v.effect, b)
    h = 1e-4  # the Wald interval from the observed information of the same likelihood
    info = -(_efron_loglik(b + h, x, t, e, g) - 2 * _efron_loglik(b, x, t, e, g) + _efron_loglik(b - h, x, t, e, g)) / h ** 2
    assert math.isclose((v.high - v.low) / 2, 1.959963984540054 / math.sqrt(info), rel_tol=1e-3)


def test_logrank_trend_equals_the_two_group_logrank_test():
    from lifelines.statistics import logrank_test
    rng = np.random.default_rng(3)
    x = np.repeat([0.0, 1.0], 25); t = np.round(rng.exponential(np.where(x > 0, 20, 10))); e = t < 40; t = np.minimum(t, 40)
    z = _logrank_trend(x, t, e, np.zeros(len(x), int))
    chi2 = logrank_test(t[x == 0], t[x == 1], e[x == 0], e[x == 1]).test_statistic
    assert math.isclose(z ** 2, chi2, rel_tol=1e-9)


def test_only_the_order_of_the_times_matters():
    x, t, e, g = _data(4)
    a, b = censored_trend_verdict(x, t, e, strata=g, max_censored=1.0), censored_trend_verdict(x, 3 * t + 7, e, strata=g, max_censored=1.0)
    assert math.isclose(a.effect, b.effect, rel_tol=1e-6) and a.verdict == b.verdict


def test_schoenfeld_mde():
    x, t, e, g = _data(5)
    v = censored_trend_verdict(x, t, e, strata=g, max_censored=1.0)
    sx = np.concatenate([x[g == s] - x[g == s].mean() for s in np.unique(g)]).std()
    assert math.isclose(v.mde, (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / (sx * math.sqrt(e.sum())), rel_tol=1e-9)


def test_mostly_censored_is_inconclusive():
    "Perfectly ordered sets decide the trend while at most half the runs are censored; with more, the verdict is inconclusive."
    x = np.repeat(np.arange(5.0), 4); jitter = np.tile([0.0, 1, 2, 3], 5)
    for last_seen, want in ((2, 'holds'), (1, 'inconclusive')):  # sets above `last_seen` censored: 8 or 12 of 20
        e = x <= last_seen; t = np.where(e, 10.0 * (x + 1) + jitter, 100.0)
        assert censored_trend_verdict(x, t, e).verdict == want
        assert censored_trend_verdict(x, t, e, max_censored=1.0).verdict == 'holds'


@pytest.mark.parametrize('kw, msg', [(dict(x=[0, 1], time=[1.0], event=[True, True]), 'one value per run'),
                                     (dict(x=[0, 1], time=[1.0, -2.0], event=[True, True]), 'time >= 0'),
                                     (dict(x=[0, np.nan], time=[1.0, 2.0], event=[True, True]), 'must be finite'),
                                     (dict(x=[0, 1], time=[1.0, 2.0], event=[True, True], side='within'), "side='within'")])
def test_bad_input_is_named(kw, msg):
    with pytest.raises(BadValueError, match=msg.replace('(', r'\(')): censored_trend_verdict(**kw)


def test_too_few_events_is_inconclusive():
    assert censored_trend_verdict([0, 1, 2, 3], [5.0, 9, 9, 9], [True, False, False, False]).verdict == 'inconclusive'

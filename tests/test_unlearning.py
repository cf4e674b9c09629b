"Tests of the unlearning chapter: every unlearner on the tiny preset, masks, divergence, the oracle, bad input."
import math, re, warnings, copy
from dataclasses import asdict
import numpy as np
import pytest
import torch, torch.nn as nn
from unlearnrepro.core import *
from unlearnrepro.data import *
from unlearnrepro.models import *
from unlearnrepro.localization import Mask, grad_sum
import unlearnrepro.localization as localization
import unlearnrepro.unlearning as U
from unlearnrepro.unlearning import *

# short runs: one epoch of every gradient method, a small Fisher for IU
FAST = {n: dict(epochs=1) for n in UNLEARNERS.names()}
FAST['scrub'] = dict(epochs=1, msteps=1)
FAST['iu'] = dict(n_samples=32)
FAST['ssd'] = {}


@pytest.fixture(scope='module')
def setup():
    dig = load_dataset('digits')
    recipe = Recipe(epochs=10, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64)
    original, _ = fit(dig, {'name': 'cnn_small'}, recipe, seed=0)
    f_pos, r_pos = check_split(make_forget_set(dig, 'iid', frac=0.1, seed=0), len(dig.train))
    return dict(dig=dig, original=original, forget=dig.train.subset(f_pos), retain=dig.train.subset(r_pos),
                f_pos=f_pos, r_pos=r_pos, state={k: v.detach().cpu().clone() for k, v in original.state_dict().items()})  # a CPU copy: fit's model is on get_device()


def _same_state(model, state):
    return all(torch.equal(v.cpu(), state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize('name', UNLEARNERS.names())
def test_every_unlearner_runs(setup, name):
    s = setup
    mask = Mask.full(s['original']) if name == 'rft' else None
    hp = FAST[name] if name != 'rum' else dict(strata=[s['forget'].idx[i::3].tolist() for i in range(3)], unlearners=['finetune'], hps=[dict(epochs=1)])
    m, c = unlearn(name, s['original'], s['retain'], s['forget'], mask=mask, seed=0, **hp)
    assert m is not s['original'] and _same_state(s['original'], s['state'])  # the input is untouched
    assert not m.training
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert isinstance(c, Cost) and c.unlearner == name and c.examples > 0 and c.steps > 0 and c.seconds > 0
    assert not c.diverged
    out = predict(m, s['dig'].test)
    print(f"{name}: test accuracy {out['correct'].float().mean().item():.3f}, {c.examples} examples, {c.seconds:.2f} s")
    assert torch.isfinite(out['logits']).all() and not c.collapsed and out['logits'].argmax(1).unique().numel() > 1  # a usable model, not one class for all


@pytest.mark.parametrize('name', ['finetune', 'neggrad', 'neggrad_plus', 'random_label', 'l1_sparse', 'scrub',
                                  'rft', 'sgld_finetune', 'iu', 'ssd', 'salun', 'del'])
def test_masked_entries_bit_identical(setup, name):
    "Unselected entries do not move, with weight decay and momentum on; selected ones do."
    s = setup; orig = s['original']
    g = make_generator(1)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in orig.named_parameters()})
    for k in ('1.weight', '1.bias'): mask.masks[k][:] = False  # a BatchNorm layer with nothing selected
    hp = dict(FAST[name])
    if name not in ('iu', 'ssd'): hp.update(weight_decay=1e-2, momentum=0.9, freeze_bn_stats=True)
    m, c = unlearn(name, orig, s['retain'], s['forget'], mask=mask, seed=3, **hp)
    trained = with_head(mask, orig) if name in ('rft', 'del') else mask
    new = dict(m.named_parameters()); moved = 0
    for n, p in orig.named_parameters():
        keep = ~trained.masks[n]
        assert torch.equal(new[n].detach().cpu()[keep], p.detach().cpu()[keep]), n
        moved += int((new[n].detach().cpu() != p.detach().cpu())[trained.masks[n]].sum())
    assert moved > 0
    for b in ('1.running_mean', '1.running_var'): assert torch.equal(m.state_dict()[b].cpu(), s['state'][b])


def test_masked_adam_and_bn_default(setup):
    s = setup; orig = s['original']
    mask = Mask.full(orig, False); mask.masks['3.weight'][:4] = True
    m, _ = unlearn('finetune', orig, s['retain'], s['forget'], mask=mask, epochs=1, optimizer='adam', lr=1e-3, weight_decay=1e-2)
    new = dict(m.named_parameters())
    for n, p in orig.named_parameters():
        assert torch.equal(new[n].detach().cpu()[~mask.masks[n]], p.detach().cpu()[~mask.masks[n]])
    assert not torch.equal(new['3.weight'].detach().cpu()[:4], orig.state_dict()['3.weight'].cpu()[:4])
    # default freeze_bn_stats=False: running statistics of unselected BN layers still update
    assert not torch.equal(m.state_dict()['1.running_mean'].cpu(), s['state']['1.running_mean'])


def test_rft_full_mask_is_short_retrain(setup):
    s = setup; orig, dig = s['original'], s['dig']
    def row(m):
        pf, pt = predict(m, s['forget']), predict(m, dig.test)
        return dict(forget_acc=pf['correct'].float().mean().item(), forget_loss=pf['loss'].mean().item(), test_acc=pt['correct'].float().mean().item(),
                    test_loss=pt['loss'].mean().item())
    m, c = unlearn('rft', orig, s['retain'], s['forget'], mask=Mask.full(orig), seed=0, epochs=5)
    oracle, _ = unlearn('retrain', orig, s['retain'], s['forget'], seed=0, epochs=10)
    r_o, r_r, r_rft = row(orig), row(oracle), row(m)
    print('original', r_o, '\noracle', r_r, '\nrft(full)', r_rft)
    assert all((p.detach().cpu() != q.detach().cpu()).float().mean() > 0.99 for p, q in zip(m.parameters(), orig.parameters()))
    assert r_rft['forget_acc'] <= r_o['forget_acc']
    assert r_rft['forget_loss'] > 2 * r_o['forget_loss']  # the forget set is no longer fitted like training data
    # the forget set looks like held-out data to the retrained model, not like training data as it does to the original
    assert abs(r_rft['forget_loss'] - r_rft['test_loss']) < abs(r_o['forget_loss'] - r_o['test_loss'])
    assert r_rft['test_acc'] > 1 / dig.n_classes  # it learned: above chance


def test_retrain_uses_only_retain(setup, monkeypatch):
    s = setup; seen = []
    real = U.train
    def spy(model, data, recipe, seed=0, loss_fn=None, **kw):
        def lf(m, x, y, idx): seen.append(idx.cpu()); return loss_fn(m, x, y, idx)
        return real(model, data, recipe, seed=seed, loss_fn=lf, **kw)
    monkeypatch.setattr(U, 'train', spy)
    m, c = unlearn('retrain', s['original'], s['retain'], s['forget'], epochs=2)
    idx = torch.cat(seen)
    assert set(idx.tolist()) == set(s['retain'].idx.tolist())
    assert len(idx) == 2 * len(s['retain']) == c.examples
    assert c.steps == 2 * math.ceil(len(s['retain']) / 64)


def test_retrain_reinitialises(setup):
    s = setup
    m, c = unlearn('retrain', s['original'], s['retain'], s['forget'], epochs=0)  # no training: just the fresh init
    fresh = create_model('cnn_small', 1, 10, 8, seed=0)
    for k, v in fresh.state_dict().items(): assert torch.equal(m.state_dict()[k].cpu(), v), k


def test_neggrad_divergence(setup):
    s = setup
    with pytest.warns(UserWarning, match='restored the last weights'):
        m, c = unlearn('neggrad', s['original'], s['retain'], s['forget'], lr=1e6, epochs=20)
    assert c.diverged and c.stopped_early and 0 <= c.steps < 20 * math.ceil(len(s['forget']) / 64)
    assert any('the loss became' in n or 'non-finite' in n for n in c.notes)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert np.isfinite(predict(m, s['forget'])['loss'].numpy()).all()


def test_seeded(setup):
    s = setup
    run = lambda seed: unlearn('sgld_finetune', s['original'], s['retain'], s['forget'], seed=seed, epochs=1)[0]
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_bad_inputs(setup):
    s = setup; orig, retain, forget = s['original'], s['retain'], s['forget']
    with pytest.raises(UnknownNameError, match="unknown unlearner 'oblivion'; choose one of: .*finetune"):
        unlearn('oblivion', orig, retain, forget)
    with pytest.raises(BadValueError, match="unknown hyperparameter 'learning_rate' for unlearner 'neggrad'; allowed: epochs, lr"):
        unlearn('neggrad', orig, retain, forget, learning_rate=1.0)
    with pytest.raises(BadIndicesError, match='the forget set is empty'):
        unlearn('finetune', orig, retain, forget.subset([]))
    with pytest.raises(BadIndicesError, match='in both the forget and the retain set'):
        unlearn('finetune', orig, retain, s['dig'].train.subset(s['r_pos'][:5]))
    with pytest.raises(BadValueError, match='mask does not fit this model'):
        unlearn('finetune', orig, retain, forget, mask=Mask.full(create_model('mlp', 1, 10, 8)))
    with pytest.raises(BadValueError, match='mask does not fit this model'):
        unlearn('rft', orig, retain, forget, mask=Mask.full(create_model('cnn_small', 1, 10, 8, width=8)))
    with pytest.raises(BadValueError, match='rft needs a mask'):
        unlearn('rft', orig, retain, forget)
    with pytest.raises(BadValueError, match='selects no parameter'):
        unlearn('neggrad', orig, retain, forget, mask=Mask.full(orig, False))
    with pytest.raises(BadValueError, match='msteps=3'):
        unlearn('scrub', orig, retain, forget, epochs=2, msteps=3)
    with pytest.raises(BadValueError, match='retain_weight=-0.1'):
        make_hp('neggrad_plus', retain_weight=-0.1)
    with pytest.raises(BadValueError, match='budget=0'):
        make_hp('del', budget=0)


def test_inverse_fisher_vp():
    g = torch.Generator().manual_seed(0)
    for n, d, lam in [(1, 3, 1.0), (6, 4, 0.1), (20, 8, 1e-3)]:
        G, v = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        dense = torch.linalg.solve(lam * torch.eye(d, dtype=torch.float64) + G.T @ G / n, v)
        assert torch.allclose(inverse_fisher_vp(G.clone(), v, lam), dense, atol=1e-8)


def test_per_example_grads_match_loop():
    torch.manual_seed(0)
    net = create_model('cnn_small', 1, 3, 8, seed=0, width=4).eval()
    d = TensorData(torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,)))
    named = list(net.named_parameters())
    G = per_example_grads(net, d, named, batch_size=2)
    for i in range(5):
        loss = nn.functional.cross_entropy(net(d.x[i:i + 1]), d.y[i:i + 1])
        gi = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, [p for _, p in named])])
        assert torch.allclose(G[i], gi, atol=1e-5)
    gs = grad_sum(net, d, reduction='sum')
    assert torch.allclose(G.sum(0), torch.cat([gs[n].reshape(-1) for n, _ in named]), atol=1e-4)


def test_relabel_and_cost():
    y = torch.arange(10).repeat(100)
    y2 = relabel_other(y, 10, seed=0)
    assert (y2 != y).all() and torch.equal(y2, relabel_other(y, 10, seed=0))
    with pytest.raises(BadValueError, match='n_classes=1'): relabel_other(y, 1)
    ref = training_cost(1000, 10, 100)
    assert (ref.steps, ref.examples) == (100, 10_000)
    assert Cost(steps=10, examples=1000, seconds=1.0).fraction_of(ref)['examples'] == pytest.approx(0.1)


def test_collapsed_model_is_marked(setup):
    "A model that predicts one class for every retain example is reported as collapsed, with a note, never silently."
    s = setup
    broken = copy.deepcopy(s['original'])
    with torch.no_grad(): broken[-1].bias[3] = 1e6  # the head always says 3
    with pytest.warns(UserWarning, match='collapsed'):
        m, c = unlearn('finetune', broken, s['retain'], s['forget'], epochs=1, lr=1e-12)
    assert c.collapsed and any('collapsed' in n for n in c.notes)
    _, ok = unlearn('finetune', s['original'], s['retain'], s['forget'], epochs=1)
    assert not ok.collapsed


NAN, INF = float('nan'), float('inf')
BAD_HP = [  # (unlearner, hyperparameters, the message must contain)
    ('finetune', dict(weight_decay=NAN), "unlearner 'finetune': weight_decay=nan is not allowed: it must be a finite number in [0, inf)"),
    ('finetune', dict(weight_decay=INF), "unlearner 'finetune': weight_decay=inf is not allowed: it must be a finite number in [0, inf)"),
    ('finetune', dict(weight_decay='0.1'), "unlearner 'finetune': weight_decay='0.1' is not allowed: it must be a finite number in [0, inf)"),
    ('finetune', dict(freeze_bn_stats='False'), "unlearner 'finetune': freeze_bn_stats='False' is not allowed: it must be True or False"),
    ('finetune', dict(freeze_bn_stats=1), "freeze_bn_stats=1 is not allowed: it must be True or False"),
    ('finetune', dict(epochs=5.0), "unlearner 'finetune': epochs=5.0 is not allowed: it must be an integer in [0, inf)"),
    ('finetune', dict(epochs=-1), "epochs=-1 is not allowed: it must be an integer in [0, inf)"),
    ('finetune', dict(batch_size=True), "batch_size=True is not allowed: it must be an integer in [1, inf)"),
    ('finetune', dict(lr=0.0), "lr=0.0 is not allowed: it must be a finite number in (0, inf)"),
    ('finetune', dict(lr=NAN), "lr=nan is not allowed: it must be a finite number in (0, inf)"),
    ('finetune', dict(momentum=1), "momentum=1 is not allowed: it must be a finite number in [0, 1)"),
    ('finetune', dict(final_lr_frac=1.5), "final_lr_frac=1.5 is not allowed: it must be a finite number in (0, 1]"),
    ('finetune', dict(lr_decay=INF), "lr_decay=inf is not allowed: it must be a finite number in (0, 1]"),
    ('finetune', dict(milestones=[3, 0]), "milestones[1]=0 is not allowed: it must be an integer in [1, inf)"),
    ('finetune', dict(optimizer=1), "unlearner 'finetune': optimizer=1 is not allowed: it must be a string"),
    ('finetune', dict(schedule='linear'), "unknown schedule 'linear'; choose one of: constant, cosine, multistep"),
    ('iu', dict(n_samples=1.5), "unlearner 'iu': n_samples=1.5 is not allowed: it must be an integer in [1, inf)"),
    ('iu', dict(step_scale=NAN), "unlearner 'iu': step_scale=nan is not allowed: it must be a finite number in (0, inf)"),
    ('iu', dict(step_scale=-1), "unlearner 'iu': step_scale=-1 is not allowed: it must be a finite number in (0, inf)"),
    ('iu', dict(damping=INF), "unlearner 'iu': damping=inf is not allowed: it must be a finite number in (0, inf)"),
    ('ssd', dict(lam=INF), "unlearner 'ssd': lam=inf is not allowed: it must be a finite number in (0, inf)"),
    ('ssd', dict(batch_size=0), "unlearner 'ssd': batch_size=0 is not allowed: it must be an integer in [1, inf)"),
    ('l1_sparse', dict(l1_coef=NAN), "unlearner 'l1_sparse': l1_coef=nan is not allowed: it must be a finite number in [0, inf)"),
    ('scrub', dict(kl_weight=NAN), "unlearner 'scrub': kl_weight=nan is not allowed: it must be a finite number in [0, inf)"),
    ('scrub', dict(kl_weight=-1), "unlearner 'scrub': kl_weight=-1 is not allowed: it must be a finite number in [0, inf)"),
    ('scrub', dict(temperature=INF), "unlearner 'scrub': temperature=inf is not allowed: it must be a finite number in (0, inf)"),
    ('scrub', dict(msteps=2.0), "unlearner 'scrub': msteps=2.0 is not allowed: it must be an integer in [0, inf)"),
    ('scrub', dict(epochs=2, msteps=3), "unlearner 'scrub': msteps=3 is not allowed: it must be an integer in [0, epochs=2]"),
    ('neggrad_plus', dict(forget_batch_size=1.5), "unlearner 'neggrad_plus': forget_batch_size=1.5 is not allowed: it must be an integer in [1, inf)"),
    ('neggrad_plus', dict(retain_weight=NAN), "unlearner 'neggrad_plus': retain_weight=nan is not allowed: it must be a finite number in [0, 1]"),
    ('sgld_finetune', dict(sigma=INF), "unlearner 'sgld_finetune': sigma=inf is not allowed: it must be a finite number in [0, inf)"),
    ('salun', dict(budget=1.5), "unlearner 'salun': budget=1.5 is not allowed: it must be a finite number in (0, 1]"),
    ('del', dict(localizer_kw=[]), "unlearner 'del': localizer_kw=[] is not allowed: it must be a dict"),
    ('rft', dict(head=0), "unlearner 'rft': head=0 is not allowed: it must be a string"),
    ('rum', dict(retain_mode='loose'), "unlearner 'rum': retain_mode='loose' is not allowed: it must be one of 'progressive', 'strict'"),
    ('rum', dict(strata=[[1]], unlearners=['finetune'], hps=[dict(lr=NAN)]), "unlearner 'finetune': lr=nan is not allowed"),
]

@pytest.mark.parametrize('name, hp, msg', BAD_HP, ids=[f"{n}-{','.join(f'{k}={v!r}' for k, v in hp.items())}" for n, hp, _ in BAD_HP])
def test_bad_hyperparameter_values(name, hp, msg):
    with pytest.raises(UnlearnReproError) as e: make_hp(name, **hp)
    assert msg in str(e.value), str(e.value)


def test_bad_values_fail_before_any_work(setup):
    "A bad hyperparameter or seed is refused first: before the data are checked or the model is touched (None here)."
    s = setup
    with pytest.raises(BadValueError, match="unlearner 'finetune': weight_decay=nan is not allowed"):
        unlearn('finetune', None, s['retain'], s['forget'], weight_decay=NAN)
    for bad in (1.5, -1, True, '0', None):
        with pytest.raises(BadValueError, match=re.escape(f"seed={bad!r} is not allowed")):
            unlearn('finetune', None, None, None, seed=bad)
    m, _ = unlearn('finetune', s['original'], s['retain'], s['forget'], seed=np.int64(0), epochs=1)  # a numpy integer is a seed


def test_hyperparameters_from_yaml_optuna_and_numpy():
    "Values as YAML, Optuna and numpy give them still build, unchanged; an integer-valued float for an int field does not."
    import yaml
    plain = lambda d: {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}  # YAML has lists, no tuples
    for name in UNLEARNERS.names():
        if name == 'rum': continue
        d = plain(hp_defaults(name))
        assert plain(asdict(make_hp(name, **yaml.safe_load(yaml.safe_dump(d))))) == d  # the defaults survive a YAML round trip
        space = search_space(name) if hasattr(make_hp(name), 'space') else {}
        if 'epochs' in space:
            lo, hi, log = space['epochs']
            assert isinstance(lo, int) and isinstance(hi, int) and not log  # Optuna's suggest_int: integers
    h = make_hp('scrub', epochs=np.int64(3), msteps=np.int32(1), lr=1, temperature=np.float32(2.0), milestones=[2], freeze_bn_stats=np.bool_(False))
    assert (h.epochs, h.msteps, h.lr, h.milestones) == (3, 1, 1, [2]) and h.recipe().milestones == (2,)
    assert make_hp('ssd', threshold=16, lam=np.float64(1.5)).threshold == 16
    assert make_hp('retrain', epochs=0).epochs == 0  # retrain's bare fresh init (see test_retrain_reinitialises)
    with pytest.raises(BadValueError, match='epochs=5.0 is not allowed: it must be an integer'): make_hp('finetune', epochs=5.0)
    with pytest.raises(BadValueError, match=r"TrainHP: lr=inf is not allowed"): TrainHP(lr=INF)


def _bn_overflow(model, at=3):
    "A copy of `model` whose first BatchNorm input is multiplied by 1e30 in training forward pass `at` (once): the running variance overflows, the loss stays finite."
    m, calls = copy.deepcopy(model), [0]
    def hook(mod, inp):
        if not mod.training: return  # eval-mode passes (the input checks, evaluation) leave the statistics alone
        calls[0] += 1
        if calls[0] == at: return (inp[0] * 1e30,)
    next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d)).register_forward_pre_hook(hook)
    return m


def _finite_state(m):
    return all(bool(torch.isfinite(v).all()) for v in m.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize('stop', [None, 2])
def test_nonfinite_batchnorm_statistics_are_restored(setup, stop):
    "BatchNorm statistics that overflow during unlearning: the last finite state comes back, the cost says diverged (at the epoch end, or after a monitor stop)."
    s = setup
    def stop_at(st):
        if st.step >= stop: raise StopTraining
    on_step = None if stop is None else stop_at
    with pytest.warns(UserWarning, match='restored the last weights'):
        m, c = unlearn('finetune', _bn_overflow(s['original']), s['retain'], s['forget'], epochs=1, on_step=on_step)
    assert c.diverged and c.stopped_early
    assert any(('1.running_var' in n if stop is None else 'BatchNorm statistics became non-finite' in n) for n in c.notes), c.notes
    if stop is not None: assert c.steps == stop
    assert _finite_state(m)
    assert np.isfinite(predict(m, s['forget'])['logits'].numpy()).all()


def test_neggrad_divergence_restores_finite_statistics(setup):
    "A diverging NegGrad overflows BatchNorm statistics before the loss turns nan: no non-finite buffer comes back either."
    s = setup
    with pytest.warns(UserWarning, match='restored the last weights'):
        m, c = unlearn('neggrad', s['original'], s['retain'], s['forget'], lr=1e6, epochs=20)
    assert c.diverged and _finite_state(m)


def _strata(s):
    loss = predict(s['original'], s['forget'])['loss'].numpy()
    return [s['forget'].idx[p].tolist() for p in refine(loss)]


def test_rum_progressive_retain_never_holds_forget_outside_strata(setup, monkeypatch):
    "Progressive retain sets: D_r plus the strata still to come; examples of S in no stratum are never trained on."
    s = setup; strata = _strata(s)
    half = [st[:len(st) // 2] for st in strata]  # S is not covered: the other halves are asked to be forgotten too
    outside = set(s['forget'].idx.tolist()) - set(sum(half, []))
    seen, real = [], U.unlearn
    def spy(name, model, retain, forget, **kw):
        if name != 'rum': seen.append((set(retain.idx.tolist()), set(forget.idx.tolist())))
        return real(name, model, retain, forget, **kw)
    monkeypatch.setattr(U, 'unlearn', spy)
    for mode in ('progressive', 'strict'):
        seen.clear()
        _, c = spy('rum', s['original'], s['retain'], s['forget'], strata=half, unlearners=['finetune'], hps=[dict(epochs=1)], retain_mode=mode)
        r_idx = set(s['retain'].idx.tolist())
        for i, (r, f) in enumerate(seen):
            assert f == set(half[i]) and not (r & outside)
            assert r == (r_idx | set(sum(half[i + 1:], [])) if mode == 'progressive' else r_idx)
        n = len(s['retain'])
        assert [st['n_retain'] for st in c.info['steps']] == ([n + len(half[1]) + len(half[2]), n + len(half[2]), n] if mode == 'progressive' else [n] * 3)


def test_rum_covering_strata_unchanged_and_vanilla(setup):
    "Strata that cover S (RUM's experiments): each step retains D minus what is unlearned so far, as before; vanilla = one stratum."
    s = setup; strata = _strata(s); original, retain, forget = s['original'], s['retain'], s['forget']
    assert sum(map(len, strata)) == len(forget)
    m, c = unlearn('rum', original, retain, forget, strata=strata, unlearners=['finetune'], hps=[dict(epochs=1)])
    ref, done = original, []
    for i, st in enumerate(strata):
        done += st
        r_i = U._join(retain, forget.subset(np.flatnonzero(~np.isin(forget.idx.numpy(), done))))  # the former construction
        ref, _ = unlearn('finetune', ref, r_i, U._select(forget, st), seed=i, epochs=1)
    assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), ref.state_dict().values()))
    van, _ = unlearn('neggrad_plus', original, retain, forget, seed=2, epochs=1)
    one, _ = unlearn('rum', original, retain, forget, seed=2, strata=[forget.idx.tolist()], unlearners=['neggrad_plus'], hps=[dict(epochs=1)])
    assert all(torch.equal(p, q) for p, q in zip(van.state_dict().values(), one.state_dict().values()))



def test_refine_and_strata_errors(setup):
    "Refinement and strata errors name the value and what is allowed."
    sc = np.arange(9.0)
    for args, kw, msg in [((np.arange(2.0),), {}, '2 examples cannot make 3 strata of at least 1 example(s): n_strata x size must be at most the number of scores'),
                          ((sc,), dict(size=4), '9 examples cannot make 3 strata of 4 example(s)'),
                          (([0.1, NAN, 0.3],), {}, 'scores[1]=nan is not allowed: every score must be a finite number'),
                          ((np.zeros((2, 3)),), {}, 'scores of shape (2, 3) are not allowed: they must be a 1-d array'),
                          ((['a', 'b', 'c'],), {}, "scores=['a', 'b', 'c'] is not allowed"),
                          ((sc,), dict(centre='mean'), "centre='mean' is not allowed: it must be 'median' or a finite number"),
                          ((sc,), dict(n_strata=1.5), 'n_strata=1.5 is not allowed: it must be an integer in [1, inf)'),
                          ((sc,), dict(seed=-1), 'seed=-1 is not allowed')]:
        with pytest.raises(BadValueError, match=re.escape(msg)): refine(*args, **kw)
    s = setup; strata = _strata(s); o, r, f = s['original'], s['retain'], s['forget']
    for st, msg in [([strata[0], strata[0][:1]], f'strata overlap: idx {strata[0][0]} is in stratum 1 and an earlier one; strata must be disjoint'),
                    ([strata[0], []], 'stratum 1 is empty; every stratum needs at least one forget-set idx'),
                    ([[10**6]], 'stratum 0 holds idx 1000000, which is not in the forget set; strata hold forget-set idx values only')]:
        with pytest.raises(BadIndicesError, match=re.escape(msg)): unlearn('rum', o, r, f, strata=st, unlearners=['finetune'])

"Tests of the unlearning chapter: every unlearner on the tiny preset, masks, divergence, the oracle, bad input."
import math, warnings, copy
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
                f_pos=f_pos, r_pos=r_pos, state={k: v.clone() for k, v in original.state_dict().items()})


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
    assert isinstance(c, Cost) and c.method == name and c.examples > 0 and c.steps > 0 and c.seconds > 0
    assert not c.diverged
    acc = accuracy(m, s['dig'].test)
    print(f"{name}: test accuracy {acc:.3f}, {c.examples} examples, {c.seconds:.2f} s")
    assert acc > 0.5


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
        assert torch.equal(new[n].detach().cpu()[keep], p.detach()[keep]), n
        moved += int((new[n].detach().cpu() != p.detach())[trained.masks[n]].sum())
    assert moved > 0
    for b in ('1.running_mean', '1.running_var'): assert torch.equal(m.state_dict()[b].cpu(), s['state'][b])


def test_masked_adam_and_bn_default(setup):
    s = setup; orig = s['original']
    mask = Mask.full(orig, False); mask.masks['3.weight'][:4] = True
    m, _ = unlearn('finetune', orig, s['retain'], s['forget'], mask=mask, epochs=1, optimizer='adam', lr=1e-3, weight_decay=1e-2)
    new = dict(m.named_parameters())
    for n, p in orig.named_parameters():
        assert torch.equal(new[n].detach().cpu()[~mask.masks[n]], p.detach()[~mask.masks[n]])
    assert not torch.equal(new['3.weight'].detach().cpu()[:4], orig.state_dict()['3.weight'][:4])
    # default freeze_bn_stats=False: running statistics of unselected BN layers still update
    assert not torch.equal(m.state_dict()['1.running_mean'].cpu(), s['state']['1.running_mean'])


def test_rft_full_mask_is_short_retrain(setup):
    s = setup; orig, dig = s['original'], s['dig']
    def row(m):
        pf = predict(m, s['forget'])
        return dict(forget_acc=pf['correct'].float().mean().item(), forget_loss=pf['loss'].mean().item(), test_acc=accuracy(m, dig.test))
    m, c = unlearn('rft', orig, s['retain'], s['forget'], mask=Mask.full(orig), seed=0, epochs=5)
    oracle, _ = unlearn('retrain', orig, s['retain'], s['forget'], seed=0, epochs=10)
    r_o, r_r, r_rft = row(orig), row(oracle), row(m)
    print('original', r_o, '\noracle', r_r, '\nrft(full)', r_rft)
    assert all((p.detach().cpu() != q.detach()).float().mean() > 0.99 for p, q in zip(m.parameters(), orig.parameters()))
    assert r_rft['forget_acc'] <= r_o['forget_acc']
    assert r_rft['forget_loss'] > 2 * r_o['forget_loss']  # the forget set is no longer fitted like training data
    assert abs(r_rft['forget_acc'] - r_rft['test_acc']) < 0.05  # forget accuracy ~ held-out accuracy
    assert r_rft['test_acc'] > 0.9


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


def test_paper_hp():
    assert set(PAPER_HP) == set(UNLEARNERS.names()) - {'rum'}  # a meta-algorithm: its values are those of its steps' methods
    for name in PAPER_HP:
        for setting in ('iid', 'non_iid'): make_hp(name, **paper_hp(name, setting))
    assert paper_hp('ssd', 'non_iid')['threshold'] == 16.0 and paper_hp('del')['lr'] == 0.015


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

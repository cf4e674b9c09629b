"Tests of unlearnrepro.localization: budgets, hand computations, CritMem's stopping rule, random controls, errors."
import copy, math, tempfile
import pytest
import torch, torch.nn as nn, torch.nn.functional as F
from unlearnrepro.core import Cache, content_hash, BadValueError, BadIndicesError, UnknownNameError
from unlearnrepro.data import TensorData, load_dataset, forget_classes
from unlearnrepro.models import create_model, train, Recipe, n_params
from unlearnrepro.localization import (Mask, Units, attach_map, localize, cached_localize, scores, unit_scores, select,
                                       fill, LOCALIZERS, _set_unit)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Tiny models: one intra-op thread is as fast and avoids oversubscribing a shared CPU; restored afterwards."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def setup(one_thread):
    dig = load_dataset('digits')
    model, _ = train(create_model('cnn_small', dig.in_ch, dig.n_classes, dig.img_size, seed=0), dig.train,
                     Recipe(epochs=5, lr=0.05, batch_size=64), seed=0)
    model.eval()
    forget = dig.train.subset(forget_classes(dig.train.y.numpy(), 0.1, classes=(2, 5), seed=0))
    return dig, model, forget, Units(model)


def test_registry_names():
    assert {'deepest', 'shallowest', 'salloc', 'del', 'critmem', 'random', 'score'} <= set(LOCALIZERS.names())


def test_units_and_attachment():
    cnn = create_model('cnn_small', 1, 10, 8, seed=0)
    am = attach_map(cnn)
    assert am['1.weight'] == am['1.bias'] == '0.weight' and am['11.bias'] == '11.weight'
    U = Units(cnn)
    assert [L.n for L in U.layers] == [16, 32, 64, 10] and U.n_total == n_params(cnn)
    assert [L.unit_size for L in U.layers] == [9 + 2, 16 * 9 + 2, 32 * 9 + 2, 64 + 1]
    U0 = Units(cnn, attach_1d=False)  # 1-d parameters: every element its own unit
    assert U0.n_units == 122 + 2 * 112 + 10 and int(U0.size.sum()) == U.n_total
    vit = create_model('vit', 1, 10, 8, patch_size=4, dim=16, depth=1, heads=2, mlp_dim=32)
    Uv = {L.name: L for L in Units(vit).layers}
    assert Uv['class_token'].n == 1 and Uv['encoder.pos_embedding'].n == 1
    assert 'encoder.layers.encoder_layer_0.self_attention.in_proj_bias' in Uv['encoder.layers.encoder_layer_0.self_attention.in_proj_weight'].attached


def test_fill_stops_at_first_unit_that_does_not_fit():
    sel = fill(torch.tensor([5, 3, 4, 1]), torch.tensor([0, 1, 2, 3]), 9)
    assert sel.tolist() == [True, True, False, False]


@pytest.mark.parametrize('budget', [0.05, 0.2, 0.5])
def test_budgets_within_one_unit(setup, budget):
    dig, model, forget, U = setup
    N, big = U.n_total, int(U.size.max())
    masks = {k: localize(k, model, forget, budget) for k in ('deepest', 'shallowest', 'del', 'random')}
    masks['random_like'] = localize('random', model, forget, budget, like=masks['del'], seed=3)
    for k, m in masks.items():
        m.check(model)
        assert 0 <= budget * N - m.n_selected < big, (k, m.n_selected)
        assert torch.equal(U.from_mask(m, 'any'), U.from_mask(m, 'all')), k  # whole units only
        assert m.meta['localizer'] in k and m.meta['budget'] == budget and m.meta['achieved'] == m.budget
    sal = localize('salloc', model, forget, budget)
    assert sal.n_selected == math.floor(budget * N)
    assert localize('del', model, forget, 1.0).n_selected == N


def test_random_matches_like(setup):
    dig, model, forget, U = setup
    d = localize('del', model, forget, 0.2)
    r = localize('random', model, forget, 0.2, like=d, seed=1)
    assert r.units(model).selected.tolist() == d.units(model).selected.tolist()
    assert not torch.equal(U.from_mask(r), U.from_mask(d))
    assert content_hash(r.masks) == content_hash(localize('random', model, forget, 0.2, like=d, seed=1).masks)
    assert content_hash(r.masks) != content_hash(localize('random', model, forget, 0.2, like=d, seed=2).masks)
    s = localize('salloc', model, forget, 0.2)
    rp = localize('random', model, forget, 0.2, like=s, granularity='parameter')
    assert rp.per_layer().selected.tolist() == s.per_layer().selected.tolist()


def test_del_h1_is_channel_mean(setup):
    dig, model, forget, U = setup
    dev = next(model.parameters()).device  # train() left the model on get_device()
    G = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for b in torch.arange(len(forget)).split(128):
        model.zero_grad(); F.cross_entropy(model(forget.x[b].to(dev)), forget.y[b].to(dev)).backward()
        for n, p in model.named_parameters(): G[n] += p.grad
    model.zero_grad()
    ws = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2]
    score = torch.cat([(p.detach() * G[n]).abs().reshape(p.shape[0], -1).mean(1) for n, p in ws]).cpu()
    size = torch.cat([torch.full((p.shape[0],), p[0].numel() + (1 if n == '11.weight' else 2)) for n, p in ws])
    sel, used = torch.zeros(len(score), dtype=torch.bool), 0
    for u in score.argsort(descending=True):
        if used + size[u] > 0.3 * U.n_total: break
        sel[u] = True; used += int(size[u])
    m = localize('del', model, forget, 0.3, h_frac=1.0)
    assert torch.equal(U.from_mask(m), sel) and m.n_selected == used
    # top-h mean with h = ceil(h_frac * row length)
    s = scores(model, forget)
    r = s['3.weight'].reshape(32, -1); h = math.ceil(0.25 * r.shape[1])
    us = unit_scores(U, s, h_frac=0.25)[16:48]
    assert torch.allclose(us, r.sort(1, descending=True).values[:, :h].mean(1))


def test_salloc_hand_computation():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1., -2.], [0.5, 0.3], [-1., 1.5]])); net[0].bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
        net[1].weight.copy_(torch.tensor([[0.7, -0.4, 1.1], [-0.3, 0.9, 0.2]])); net[1].bias.copy_(torch.tensor([0.0, 0.25]))
    fl = TensorData(torch.tensor([[1., 0.], [0., 2.]]), torch.tensor([0, 1]))
    W1, b1, W2, b2 = [p.detach() for p in net.parameters()]
    h = fl.x @ W1.T + b1; z = h @ W2.T + b2
    d = (z.softmax(1) - F.one_hot(fl.y, 2)) / 2
    hand = {'0.weight': (d @ W2).T @ fl.x, '0.bias': (d @ W2).sum(0), '1.weight': d.T @ h, '1.bias': d.sum(0)}
    # autograd agrees with the formulas
    xg = torch.autograd.grad(F.cross_entropy(net(fl.x), fl.y), list(net.parameters()))
    for (n, _), g in zip(net.named_parameters(), xg): assert torch.allclose(g, hand[n], atol=1e-6)
    sc = scores(net, fl, 'grad')
    for n in hand: assert torch.allclose(sc[n], hand[n].abs(), atol=1e-6)
    names = ['0.weight', '0.bias', '1.weight', '1.bias']
    flat = torch.cat([hand[n].abs().reshape(-1) for n in names])
    for budget in (0.2, 0.5):
        k = math.floor(budget * 17); top = flat.sort(descending=True).values
        assert top[k - 1] > top[k]
        m = localize('salloc', net, fl, budget)
        assert torch.equal(torch.cat([m.masks[n].reshape(-1) for n in names]), flat >= top[k - 1])


def _zeroed(model, U, units):
    w = copy.deepcopy(model).eval(); ps = dict(w.named_parameters())
    for u in units: _set_unit(ps, *U.unit(u))
    return w


def test_critmem_flips_and_cap(setup):
    dig, model, forget, U = setup
    dev = next(model.parameters()).device  # train() left the model on get_device(): inputs go there
    m = localize('critmem', model, forget, 1.0, max_examples=12)
    assert m.meta['status'].count('flipped') > 0
    for i, units, st, it in zip(m.meta['positions'], m.meta['units'], m.meta['status'], m.meta['iters']):
        x, y = forget.x[i:i + 1].to(dev), forget.y[i].item()
        assert it == len(units) <= 20
        if st == 'flipped':
            assert _zeroed(model, U, units)(x).argmax(1).item() != y       # the chosen units flip it
            assert _zeroed(model, U, units[:-1])(x).argmax(1).item() == y  # and it stopped at the first flip
        if st == 'cap': assert it == 20
    union = torch.zeros(U.n_units, dtype=torch.bool); union[sum(m.meta['units'], [])] = True
    assert torch.equal(U.from_mask(m), union)
    # the model itself is untouched
    x4 = forget.x[:4].to(dev)
    assert model(x4).argmax(1).tolist() == _zeroed(model, U, [])(x4).argmax(1).tolist()
    m1 = localize('critmem', model, forget, 1.0, max_examples=12, max_iters=1)
    assert max(m1.meta['iters']) <= 1
    assert all(st in ('cap', 'flipped', 'misclassified') for st in m1.meta['status'])
    small = localize('critmem', model, forget, 0.01, max_examples=12)
    assert small.budget <= 0.01  # which examples go over a 1 % budget depends on the trained model; the rules do not
    kept = torch.zeros(U.n_units, dtype=torch.bool)
    for units, st in zip(small.meta['units'], small.meta['status']):
        new = kept.clone(); new[units] = True
        if st == 'over_budget': assert int(U.size[new].sum()) > 0.01 * U.n_total  # refused only when its units would exceed the budget
        else: kept = new
    assert torch.equal(U.from_mask(small), kept)  # the mask is the union of the accepted examples' units
    none = localize('critmem', model, forget, 1e-6, max_examples=12)  # below one parameter: every example with units is refused
    assert none.n_selected == 0 and any(none.meta['units'])
    assert all(st == 'over_budget' for units, st in zip(none.meta['units'], none.meta['status']) if units)
    with pytest.raises(BadValueError, match='max_iters=0'): localize('critmem', model, forget, 0.1, max_iters=0)
    with pytest.raises(BadValueError, match='max_iters=True'): localize('critmem', model, forget, 0.1, max_iters=True)
    for bad in (0, 2.5, False):
        with pytest.raises(BadValueError, match=f'max_examples={bad}'): localize('critmem', model, forget, 0.1, max_examples=bad)


def test_bad_inputs(setup):
    dig, model, forget, U = setup
    with pytest.raises(UnknownNameError, match="unknown localizer 'nope'"): localize('nope', model, forget, 0.1)
    for b in (0, 1.5, -0.1):
        with pytest.raises(BadValueError, match=f'budget={b}'): localize('del', model, forget, b)
    with pytest.raises(BadIndicesError, match='forget set is empty'): localize('del', model, forget.subset([]), 0.1)
    with pytest.raises(UnknownNameError, match="unknown criterion 'hess'"): localize('score', model, forget, 0.1, criterion='hess')
    with pytest.raises(UnknownNameError, match="unknown granularity"): localize('score', model, forget, 0.1, granularity='layer')
    with pytest.raises(BadValueError, match='h_frac=0'): localize('del', model, forget, 0.1, h_frac=0)
    other = Mask.full(create_model('mlp', 1, 10, 8), True)
    with pytest.raises(BadValueError, match='mask does not fit this model'): other.check(model)
    with pytest.raises(BadValueError, match='mask does not fit this model'): localize('random', model, forget, 0.1, like=other)
    wide = localize('del', create_model('cnn_small', 1, 10, 8, width=8, seed=0), forget, 0.1)
    with pytest.raises(BadValueError, match='has shape'): wide.check(model)


def test_cached_localize_and_state(setup, tmp_path):
    dig, model, forget, U = setup
    c, key = Cache(tmp_path), dict(model='cnn_small', epochs=5, seed=0)
    a = cached_localize('del', model, forget, 0.2, c, key, h_frac=0.5)
    b = cached_localize('del', model, forget, 0.2, c, key, h_frac=0.5)
    assert (c.hits, c.misses) == (1, 1) and content_hash(a.masks) == content_hash(b.masks)
    assert b.meta['options'] == {'h_frac': 0.5} and b.meta['localizer'] == 'del' and b.meta['achieved'] == b.budget
    cached_localize('del', model, forget, 0.3, c, key, h_frac=0.5)
    cached_localize('del', model, forget, 0.2, c, dict(key, seed=1), h_frac=0.5)
    cached_localize('del', model, forget.subset(range(20)), 0.2, c, key, h_frac=0.5)
    assert c.misses == 4
    cm = Mask.from_state(localize('critmem', model, forget, 1.0, max_examples=4).state())
    assert len(cm.meta['units']) == 4 and cm.meta['localizer'] == 'critmem'


@pytest.mark.parametrize('h_frac, budget', [(1.0, 10 / 23), (0.5, 10 / 23), (1.0, 14 / 23), (0.25, 0.99)])
def test_del_mask_by_hand(h_frac, budget):
    "DEL's mask recomputed from its definition with plain autograd: |theta x G|, top-h mean per row, whole rows by rank until the budget."
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    f = TensorData(torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
    gs = torch.autograd.grad(F.cross_entropy(lin(f.x), f.y), list(lin.parameters()))  # one batch: G = the batch-mean gradient
    s = {n: (p.detach() * g).abs() for (n, p), g in zip(lin.named_parameters(), gs)}
    rows = [('0', i, 4) for i in range(3)] + [('1', i, 3) for i in range(2)]  # (layer, row, row length); each row owns its bias entry
    def score(l, i, n):
        h = max(1, math.ceil(h_frac * n)); return s[f'{l}.weight'][i].sort(descending=True).values[:h].mean().item()
    order = sorted(rows, key=lambda r: -score(*r))
    cap, used, want = budget * 23, 0, {n: torch.zeros_like(p, dtype=torch.bool) for n, p in lin.named_parameters()}
    for l, i, n in order:  # the longest prefix of the ranking that fits
        if used + n + 1 > cap + 1e-9: break
        used += n + 1; want[f'{l}.weight'][i] = True; want[f'{l}.bias'][i] = True
    got = localize('del', lin, f, budget, h_frac=h_frac, batch_size=5)
    for n in want: assert torch.equal(got.masks[n], want[n]), (n, got.masks[n], want[n])
    assert got.n_selected == used <= budget * 23 + 1e-9


def test_del_scored_on_train_and_weight_criterion(setup):
    dig, model, forget, U = setup
    t = localize('del', model, forget, 0.2, data=dig.train)  # DEL Table 6: scored on the whole train set
    assert t.meta['options']['data']['n'] == len(dig.train)
    w = scores(model, forget, 'weight')
    assert torch.equal(w['0.weight'], model[0].weight.detach().cpu().abs())  # scores are CPU tensors


@pytest.mark.parametrize('name', ['random', 'critmem'])
@pytest.mark.parametrize('seed', [1.5, -1, True, '1', None])
def test_seeded_localizers_refuse_bad_seeds(setup, name, seed):
    "A seed is a non-negative integer (1.5 is not seed 1, True is not seed 1): refused before any work, directly or through the cache."
    dig, model, forget, U = setup
    with pytest.raises(BadValueError, match=f"seed={seed!r} is not allowed"): localize(name, model, forget, 0.2, seed=seed)
    with pytest.raises(BadValueError, match=f"seed={seed!r} is not allowed"): LOCALIZERS[name](model, forget, 0.2, seed=seed)
    c = Cache(tempfile.mkdtemp())
    with pytest.raises(BadValueError, match=f"seed={seed!r} is not allowed"): cached_localize(name, model, forget, 0.2, c, {'m': 1}, seed=seed)
    assert c.misses == 0 and c.hits == 0


def test_numpy_seed_is_a_seed(setup):
    import numpy as np
    dig, model, forget, U = setup
    a, b = localize('random', model, forget, 0.2, seed=np.int64(3)), localize('random', model, forget, 0.2, seed=3)
    assert content_hash(a.masks) == content_hash(b.masks)


def test_units_are_set_in_place_whatever_the_memory_layout(setup):
    "CritMem's zeroing and restoring of a unit writes the same values into channels-last weights (no flat view exists) as into contiguous ones."
    dig, model, forget, U = setup
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    a, b = dict(copy.deepcopy(model).named_parameters()), dict(copy.deepcopy(cl).named_parameters())
    for u in [0, U.n_units // 2, U.n_units - 1]:  # a first-layer channel, one in the middle, the head's last row
        L, j = U.unit(u)
        _set_unit(a, L, j); _set_unit(b, L, j)
        assert all(torch.equal(a[n], b[n]) for n in a)
        _set_unit(a, L, j, dict(model.named_parameters())); _set_unit(b, L, j, dict(cl.named_parameters()))
        assert all(torch.equal(a[n], b[n]) and torch.equal(a[n], p) for n, p in model.named_parameters())  # restored
    m = localize('critmem', cl, forget, 0.3, max_examples=6)
    union = torch.zeros(U.n_units, dtype=torch.bool); union[sum(m.meta['units'], [])] = True
    assert torch.equal(U.from_mask(m), union) and 0 < m.budget <= 0.3

"""Ghost per-example gradient norms (chapter 02) against an independent per-example loop, in float32 and float64; the
cases they refuse (the vmap path takes those); no side effects on the model; `per_example_grad_norms` on both paths."""
import pytest, torch, torch.nn as nn, torch.nn.functional as F
import unlearnrepro.models as M
from unlearnrepro.core import BadValueError
from unlearnrepro.data import TensorData
from unlearnrepro.models import create_model, ghost_grad_norms, ghost_covered as covered, per_example_grad_norms


def loop_norms(model, x, y):
    "Reference: one example at a time, loss.backward(), norm over all trainable .grad (eval mode)."
    was = model.training; model.eval(); out = []
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        out.append(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None).sqrt())
    model.zero_grad(set_to_none=True); model.train(was)
    return torch.stack(out)

def lib_model(name, in_ch, img, **kw):
    return create_model(name, in_ch, 10, img, seed=0, **kw)

def randomize_bn(model):
    "Non-trivial running statistics and affine parameters, so BatchNorm is not the identity."
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5); m.bias.normal_(0, 0.1, generator=g)
    return model

class Mix(nn.Module):
    "Patch-embedding conv, token Linears on 3-d inputs, LayerNorm, GroupNorm, RMSNorm, a Conv1d over tokens."
    def __init__(self, in_ch=3, d=12, n_classes=5):
        super().__init__()
        self.embed = nn.Conv2d(in_ch, d, 4, 4)  # 8x8 image -> 4 tokens
        self.ln1, self.fc1, self.fc2 = nn.LayerNorm(d, eps=0.1), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.pair = nn.Linear(d, d)  # on B x 2 x 2 x d: T = 4 over two middle dims
        self.mix = nn.Conv1d(d, d, 3, padding=1, padding_mode='circular')
        self.gn, self.rms, self.head = nn.GroupNorm(3, d, eps=0.1), nn.RMSNorm(d, eps=0.1), nn.Linear(d, n_classes)
    def forward(self, x):
        t = self.embed(x).flatten(2).mT                       # B x T x d
        t = t + self.fc2(F.gelu(self.fc1(self.ln1(t))))       # Linear on 3-d inputs
        t = t + self.gn(self.mix(t.mT)).mT                    # Conv1d + GroupNorm on B x d x T
        t = t + self.pair(t.unflatten(1, (2, 2))).flatten(1, 2)  # Linear on 4-d inputs
        return self.head(self.rms(t).mean(1))

class ConvZoo(nn.Module):
    "Convolutions with stride, dilation, 'same'/reflect/replicate padding, rectangular kernels, biases; BN1d."
    def __init__(self, n_classes=4):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
        self.c2 = nn.Conv2d(6, 5, 3, padding='same', padding_mode='reflect', dilation=2)
        self.c3 = nn.Conv2d(5, 7, 2, stride=2, padding=1, padding_mode='replicate', bias=False)
        self.bn = nn.BatchNorm2d(7)
        self.c4 = nn.Conv1d(7, 4, 3, stride=2, dilation=2, padding=2)
        self.bn1 = nn.BatchNorm1d(4); self.fc = nn.Linear(4, n_classes)
    def forward(self, x):
        h = F.relu(self.bn(self.c3(torch.tanh(self.c2(torch.tanh(self.c1(x)))))), inplace=True)
        h = self.c4(h.flatten(2))
        return self.fc(F.relu(self.bn1(h.mean(2))))

CASES = {  # name: (model factory, input shape without batch, n_classes)
    'mlp': (lambda: lib_model('mlp', 1, 8, hidden=(16, 8)), (1, 8, 8), 10),
    'cnn_small': (lambda: randomize_bn(lib_model('cnn_small', 1, 12, width=4)), (1, 12, 12), 10),
    'resnet_cifar': (lambda: randomize_bn(lib_model('resnet_cifar', 3, 8, depth=8, width=0.5)), (3, 8, 8), 10),
    'cnn_channels_last': (lambda: randomize_bn(lib_model('cnn_small', 3, 12, width=4, channels_last=True)),
                          (3, 12, 12), 10),
    'resnet18': (lambda: randomize_bn(lib_model('resnet18', 3, 8)), (3, 8, 8), 10),
    'mix': (lambda: Mix(), (3, 8, 8), 5),
    'convzoo': (lambda: randomize_bn(ConvZoo()), (2, 11, 9), 4),
}

def data(shape, n_classes, n=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, n_classes, (n,), generator=g)

@pytest.mark.parametrize('name', list(CASES))
@pytest.mark.parametrize('dtype,rtol', [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_matches_loop(name, dtype, rtol):
    make, shape, k = CASES[name]
    torch.manual_seed(0); model = make().to(dtype)
    x, y = data(shape, k, dtype=dtype)
    ref = loop_norms(model, x, y)
    modes = ['auto'] if name == 'resnet18' else ['auto', 'ghost', 'explicit']
    for mode in modes:
        got = ghost_grad_norms(model, x, y, mode=mode)
        assert got is not None and got.dtype == dtype and got.shape == (len(x),)
        torch.testing.assert_close(got, ref, rtol=rtol, atol=0)

def test_both_branches_used(monkeypatch):
    "'auto' picks ghost for short sequences (Mix: 4 tokens) and explicit for long ones (ConvZoo); forcing agrees."
    seen = []
    real = M._guse_ghost
    monkeypatch.setattr(M, '_guse_ghost', lambda *a: seen.append((a[3], real(*a))) or real(*a))
    for make, shape, k, want in [(Mix, (3, 8, 8), 5, True), (ConvZoo, (2, 11, 9), 4, False)]:
        torch.manual_seed(0); model = make().double(); seen.clear()
        x, y = data(shape, k, dtype=torch.float64)
        res = {mode: ghost_grad_norms(model, x, y, mode=mode) for mode in ('auto', 'ghost', 'explicit')}
        assert want in [c for m, c in seen if m == 'auto']
        assert all(c for m, c in seen if m == 'ghost') and not any(c for m, c in seen if m == 'explicit')
        torch.testing.assert_close(res['ghost'], res['explicit'], rtol=1e-12, atol=0)
        torch.testing.assert_close(res['auto'], res['explicit'], rtol=1e-12, atol=0)

def test_auto_choice():
    assert M._guse_ghost(4, 48, 12, 'auto') and not M._guse_ghost(784, 9, 16, 'auto')
    assert M._guse_ghost(784, 9, 16, 'ghost') and not M._guse_ghost(4, 48, 12, 'explicit')

def test_frozen_parameters_excluded():
    torch.manual_seed(0); model = Mix()
    model.fc1.weight.requires_grad_(False)                  # frozen weight, trainable bias
    model.ln1.requires_grad_(False); model.embed.bias.requires_grad_(False)
    x, y = data((3, 8, 8), 5)
    full = ghost_grad_norms(Mix().requires_grad_(True), x, y)
    got = ghost_grad_norms(model, x, y)
    torch.testing.assert_close(got, loop_norms(model, x, y), rtol=1e-4, atol=0)
    assert not torch.allclose(got, full)
    # an uncovered parameter that is frozen does not block (ViT-like cls token)
    class Tok(nn.Module):
        def __init__(s): super().__init__(); s.cls = nn.Parameter(torch.randn(4)); s.fc = nn.Linear(4, 3)
        def forward(s, x): return s.fc(x + s.cls)
    m = Tok(); x, y = data((4,), 3)
    assert ghost_grad_norms(m, x, y) is None
    m.cls.requires_grad_(False)
    torch.testing.assert_close(ghost_grad_norms(m, x, y), loop_norms(m, x, y), rtol=1e-4, atol=0)

def test_all_frozen_gives_zero():
    m = nn.Sequential(nn.Linear(3, 2)).requires_grad_(False)
    x, y = data((3,), 2)
    assert torch.equal(ghost_grad_norms(m, x, y), torch.zeros(len(x)))

class Twice(nn.Module):
    def __init__(s): super().__init__(); s.fc = nn.Linear(4, 4)
    def forward(s, x): return s.fc(torch.relu(s.fc(x)))

class Tied(nn.Module):
    def __init__(s):
        super().__init__(); s.a, s.b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4)
        s.b.weight = s.a.weight
    def forward(s, x): return s.b(torch.relu(s.a(x)))

class Functional(nn.Module):  # the weight also used outside its module: only the graph walk sees it
    def __init__(s): super().__init__(); s.fc = nn.Linear(4, 4)
    def forward(s, x): return s.fc(x) + F.linear(x, s.fc.weight)

class Overridden(nn.Linear):  # a subclass with its own forward is not trusted
    def forward(s, x): return super().forward(x) * 2

@pytest.mark.parametrize('make', [
    lambda: Twice(), lambda: Tied(), lambda: Functional(), lambda: Overridden(4, 3),
    lambda: nn.Sequential(nn.Conv2d(4, 4, 1, groups=2), nn.Flatten()),
    lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)),
    lambda: nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 3))],
    ids=['called_twice', 'tied', 'functional_reuse', 'overridden_forward', 'groups', 'bn_batch_stats', 'prelu'])
def test_uncovered_returns_none(make):
    torch.manual_seed(0); m = make()
    x = torch.randn(3, 4, 1, 1) if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d) else torch.randn(3, 4)
    assert ghost_grad_norms(m, x, torch.tensor([0, 1, 2]) % 3) is None
    assert all(p.grad is None for p in m.parameters()) and not any(mm._forward_hooks for mm in m.modules())

def test_library_vit_returns_none():
    m = lib_model('vit', 3, 8, patch_size=4, dim=16, depth=1, heads=2, mlp_dim=16)
    assert not covered(m) and ghost_grad_norms(m, *data((3, 8, 8), 10)) is None
    assert covered(lib_model('resnet_cifar', 3, 8, depth=8, width=0.25))

def _state(m):
    return (m.training, {k: v.clone() for k, v in m.state_dict().items()},
            [p.grad.clone() if p.grad is not None else None for p in m.parameters()])

def test_model_untouched():
    m = randomize_bn(lib_model('cnn_small', 1, 12, width=4)); m.train()
    next(m.parameters()).grad = torch.ones_like(next(m.parameters()))  # a pre-existing .grad is kept as is
    before = _state(m)
    assert ghost_grad_norms(m, *data((1, 12, 12), 10)) is not None
    after = _state(m)
    assert after[0] is True and all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    assert torch.equal(before[2][0], after[2][0]) and all(g is None for g in after[2][1:])
    assert not any(mm._forward_hooks or mm._backward_hooks for mm in m.modules())
    with pytest.raises(RuntimeError):  # wrong input shape: hooks removed and mode restored all the same
        ghost_grad_norms(m, torch.randn(3, 2, 12, 12), torch.zeros(3, dtype=torch.long))
    assert m.training and not any(mm._forward_hooks for mm in m.modules())

def test_chunking_and_memory_bound():
    torch.manual_seed(0); m = randomize_bn(lib_model('resnet_cifar', 3, 8, depth=8, width=0.5)).double()
    x, y = data((3, 8, 8), 10, n=7, dtype=torch.float64)
    ref = ghost_grad_norms(m, x, y)
    for mode in ('ghost', 'explicit'):  # one example per layer chunk, three per forward/backward
        torch.testing.assert_close(ghost_grad_norms(m, x, y, mode=mode, batch_size=3, max_bytes=1), ref,
                                   rtol=1e-12, atol=0)

def test_edge_cases():
    m = nn.Linear(3, 2)
    assert ghost_grad_norms(m, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).shape == (0,)
    with pytest.raises(BadValueError, match="mode='x'"): ghost_grad_norms(m, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), mode='x')
    with pytest.raises(BadValueError, match='differ in length'): ghost_grad_norms(m, torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))

def test_library_function_on_both_paths():
    "per_example_grad_norms: 'auto' takes the ghost path where it covers the model and the vmap path where not; both agree."
    m = randomize_bn(lib_model('cnn_small', 1, 12, width=4))
    d = TensorData(*data((1, 12, 12), 10, n=6))
    torch.testing.assert_close(per_example_grad_norms(m, d), per_example_grad_norms(m, d, method='vmap'), rtol=1e-4, atol=0)
    torch.testing.assert_close(per_example_grad_norms(m, d, method='ghost'), loop_norms(m, d.x, d.y), rtol=1e-4, atol=0)
    v = lib_model('vit', 3, 8, patch_size=4, dim=16, depth=1, heads=2, mlp_dim=16)  # not covered: the vmap path
    dv = TensorData(*data((3, 8, 8), 10, n=3))
    torch.testing.assert_close(per_example_grad_norms(v, dv), loop_norms(v, dv.x, dv.y), rtol=1e-4, atol=0)
    with pytest.raises(BadValueError, match="method='ghost' cannot"): per_example_grad_norms(v, dv, method='ghost')
    with pytest.raises(BadValueError, match="method='fast'"): per_example_grad_norms(m, d, method='fast')

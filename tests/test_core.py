"Determinism and the artifact cache."
import os, numpy as np, torch, pytest
from pathlib import Path
from unlearnrepro.core import *
from unlearnrepro.data import load_dataset
from unlearnrepro.models import create_model, train, Recipe, predict, fit

@pytest.fixture(scope='module')
def digits(): return load_dataset('digits')

def _train(d, seed):
    m = create_model('cnn_small', d.in_ch, d.n_classes, d.img_size, seed=seed)
    return train(m, d.train, Recipe(epochs=3, lr=0.05, batch_size=64), seed=seed)

def test_same_seed_same_weights_and_metrics(digits):
    (m1, h1), (m2, h2) = _train(digits, 7), _train(digits, 7)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1 == h2
    assert torch.equal(predict(m1, digits.test)['loss'], predict(m2, digits.test)['loss'])
    m3, _ = _train(digits, 8)
    assert not torch.equal(m3.state_dict()['0.weight'], s1['0.weight'])

def test_fit_rerun_computes_nothing_and_any_field_recomputes(digits, tmp_path):
    c = Cache(tmp_path)
    base = dict(model_cfg={'name': 'cnn_small'}, recipe=dict(epochs=1, lr=0.05, batch_size=64), seed=0)
    fit(digits, cache=c, **base); fit(digits, cache=c, **base)
    assert (c.hits, c.misses) == (1, 1)
    variants = [dict(base, seed=1), dict(base, model_cfg={'name': 'cnn_small', 'width': 8}),
                dict(base, recipe=dict(base['recipe'], lr=0.06)), dict(base, recipe=dict(base['recipe'], weight_decay=1e-4)),
                dict(base, positions=np.arange(500))]
    for i, v in enumerate(variants): fit(digits, cache=c, **v); assert c.misses == 2 + i, v
    fit(load_dataset('digits', n_train=800), cache=c, **base); assert c.misses == 2 + len(variants)

def test_truncated_artifact_detected_and_recomputed(tmp_path):
    c = Cache(tmp_path); calls = []
    make = lambda: calls.append(1) or {'w': torch.randn(100)}
    c.get('m', {'a': 1}, make)
    p = c.path('m', {'a': 1}); p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(CorruptArtifactError, match='damaged'): Cache(tmp_path, on_corrupt='raise').load('m', {'a': 1})
    c.get('m', {'a': 1}, make); assert len(calls) == 2
    # a file without a sidecar is never trusted
    c.path('m', {'a': 1}).with_suffix('.pt.json').unlink()
    with pytest.raises(CorruptArtifactError, match='no sidecar'): Cache(tmp_path, on_corrupt='raise').load('m', {'a': 1})

def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    "A run killed while the artifact is written leaves no artifact and no temp file; the rerun recomputes without a warning."
    import unlearnrepro.core as core, warnings
    c = Cache(tmp_path)
    real = core._atomic_write
    def dying(path, write):
        if path.suffix == '.pt':
            def half(tmp): Path(tmp).write_bytes(b'half a checkpoint'); raise KeyboardInterrupt  # killed mid-write
            return real(path, half)
        return real(path, write)
    monkeypatch.setattr(core, '_atomic_write', dying)
    with pytest.raises(KeyboardInterrupt): c.get('m', {'a': 1}, lambda: {'w': torch.ones(3)})
    assert not c.path('m', {'a': 1}).exists()
    assert not [p for p in tmp_path.rglob('*.tmp')]  # no temp file
    monkeypatch.setattr(core, '_atomic_write', real)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a sidecar without its artifact is simply "not stored": no warning
        assert c.load('m', {'a': 1}) is None
        assert torch.equal(c.get('m', {'a': 1}, lambda: {'w': torch.ones(3)})['w'], torch.ones(3))  # the rerun completes

def test_loads_are_weights_only(tmp_path):
    c = Cache(tmp_path)
    class Evil:
        def __reduce__(self): return (os.system, ('echo pwned',))
    with pytest.raises(CorruptArtifactError, match='cannot be read back'): c.get('m', {'a': 2}, lambda: {'x': Evil()})
    assert c.load('m', {'a': 2}) is None  # whatever was written is refused on load (weights_only), never executed

def test_unknown_preset():
    with pytest.raises(UnknownNameError, match="unknown preset 'huge'; choose one of: cpu, paper, tiny"): get_preset('huge')

def test_written_files_get_the_usual_permissions(tmp_path):
    "Atomic writes go through a private temp file; the result must still be readable by others under the umask (not 0600)."
    old = os.umask(0o022)
    try:
        c = Cache(tmp_path); c.get('m', {'a': 3}, lambda: {'w': torch.ones(2)})
        p = c.path('m', {'a': 3})
        for f in (p, p.with_suffix('.pt.json')): assert (f.stat().st_mode & 0o777) == 0o644, oct(f.stat().st_mode)
    finally: os.umask(old)

"Determinism and the artifact cache."
import os, json, numpy as np, torch, pytest
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

@pytest.mark.parametrize('bad', [1.5, True, np.float64(2.0), -1, '3'])
def test_generators_refuse_bad_seeds(bad):
    "A seed is a non-negative integer: 1.5 is not truncated to 1, True is not 1, -1 does not wrap."
    with pytest.raises(BadValueError, match='is not allowed: it must be an integer in \\[0, inf\\)'): make_generator(bad)
    with pytest.raises(BadValueError, match='is not allowed'): seed_everything(bad)

def test_generators_accept_numpy_integers():
    assert torch.equal(torch.randperm(9, generator=make_generator(np.int64(4))), torch.randperm(9, generator=make_generator(4)))

@pytest.mark.parametrize('bad', [1.5, True, -1])
def test_entry_points_refuse_bad_seeds_before_work(bad, digits, tmp_path):
    from unlearnrepro.data import make_forget_set
    from unlearnrepro.unlearning import relabel_other
    with pytest.raises(BadValueError, match='seed='): create_model('cnn_small', 1, 10, 8, seed=bad)
    with pytest.raises(BadValueError, match='seed='): relabel_other(torch.zeros(4, dtype=torch.long), 10, seed=bad)
    c = Cache(tmp_path)
    for kind in ('iid', 'non_iid'):
        with pytest.raises(BadValueError, match='seed='): make_forget_set(digits, kind, c, seed=bad)
    with pytest.raises(BadValueError, match='seed='):
        fit(digits, {'name': 'cnn_small'}, Recipe(epochs=1), seed=bad, cache=c)
    assert not list(tmp_path.rglob('*.*'))  # nothing read into or written to the cache

# ---------- timings live in the sidecar ----------

def _art(secs):
    return {'state': {'w': torch.arange(4.), 'bn.running_var': torch.ones(2)}, 'history': [{'loss': 0.25, 'seconds': secs / 3},
            {'loss': 0.125, 'seconds': secs / 3}], 'seconds': secs, 'cost': {'steps': 4, 'seconds': torch.tensor(secs, dtype=torch.float64),
            'wall_seconds': float('nan')}, 'records': {}}

def test_timings_do_not_change_the_artifact_bytes(tmp_path):
    c = Cache(tmp_path)
    a, b = _art(1.5), _art(99.25)
    pa, pb = c.save('run', {'i': 0}, a), c.save('run', {'i': 1}, b)
    assert pa.read_bytes() == pb.read_bytes()
    assert a['seconds'] == 1.5 and 'seconds' in a['history'][0]  # the caller's value is left alone
    for cfg, want in (({'i': 0}, a), ({'i': 1}, b)):
        got = c.load('run', cfg)
        assert list(got) == list(want) and list(got['cost']) == list(want['cost']) and list(got['history'][1]) == ['loss', 'seconds']
        assert got['seconds'] == want['seconds'] and got['history'][1]['seconds'] == want['history'][1]['seconds']
        assert got['cost']['seconds'].dtype == torch.float64 and got['cost']['seconds'].item() == want['cost']['seconds'].item()
        assert np.isnan(got['cost']['wall_seconds'])
        assert torch.equal(got['state']['w'], torch.arange(4.))
    meta = json.loads(pa.with_suffix('.pt.json').read_text())
    assert meta['bytes'] == pa.stat().st_size and {tuple(p) for p, _, _ in meta['volatile']} == {
        ('history', 0, 'seconds'), ('history', 1, 'seconds'), ('seconds',), ('cost', 'seconds'), ('cost', 'wall_seconds')}
    # a value without timings is stored as before: no `volatile`, the plain torch.save bytes
    p = c.save('run', {'i': 2}, {'w': torch.ones(2)})
    assert 'volatile' not in json.loads(p.with_suffix('.pt.json').read_text())
    import unlearnrepro.core as core
    assert p.read_bytes() == core._serialise({'w': torch.ones(2)}, '.pt')

def test_artifacts_with_timings_inside_still_load(tmp_path):
    "Written before timings moved to the sidecar: the timings are in the .pt, the sidecar has no `volatile`."
    import hashlib, unlearnrepro.core as core
    c = Cache(tmp_path); p = c.path('run', {'i': 0}); a = _art(2.0)
    data = core._serialise(a, '.pt'); p.parent.mkdir(parents=True)
    p.write_bytes(data)
    p.with_suffix('.pt.json').write_text(json.dumps(dict(kind='run', key=p.stem, config=c.keyed({'i': 0}), version='old', format=CACHE_FORMAT,
                                                         bytes=len(data), sha256=hashlib.sha256(data).hexdigest())))
    got = Cache(tmp_path, on_corrupt='raise').load('run', {'i': 0})
    assert list(got) == list(a) and got['seconds'] == 2.0 and got['history'][0]['seconds'] == a['history'][0]['seconds']

def test_damaged_volatile_list_is_corrupt(tmp_path):
    c = Cache(tmp_path); p = c.save('run', {'i': 0}, _art(1.0))
    side = p.with_suffix('.pt.json'); meta = json.loads(side.read_text())
    meta['volatile'][0][0] = ['no', 'such', 'path']; side.write_text(json.dumps(meta))
    with pytest.raises(CorruptArtifactError, match='cannot be read back'): Cache(tmp_path, on_corrupt='raise').load('run', {'i': 0})

FIT_JOB = '''
import sys
from unlearnrepro.core import Cache
from unlearnrepro.data import load_dataset
from unlearnrepro.models import fit, Recipe
d = load_dataset('digits', n_train=200, n_test=50)
fit(d, {'name': 'cnn_small', 'width': 4}, Recipe(epochs=2, lr=0.05, batch_size=64), seed=3, cache=Cache(sys.argv[1]), record=['events'])
'''

def test_identical_fits_in_two_processes_write_identical_bytes(tmp_path):
    "The same fit in two fresh processes with separate caches: byte-identical .pt files (the wall times differ, in the sidecars)."
    import subprocess, sys
    script = tmp_path/'job.py'; script.write_text(FIT_JOB)
    env = dict(os.environ, UNLEARNREPRO_QUIET='1', UNLEARNREPRO_THREADS='1', OMP_NUM_THREADS='1')
    for d in ('a', 'b'):
        out = subprocess.run([sys.executable, str(script), str(tmp_path/d)], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    (pa,), (pb,) = list((tmp_path/'a'/'model').glob('*.pt')), list((tmp_path/'b'/'model').glob('*.pt'))
    assert pa.name == pb.name and pa.read_bytes() == pb.read_bytes()
    ma, mb = (json.loads(p.with_suffix('.pt.json').read_text()) for p in (pa, pb))
    assert ma['sha256'] == mb['sha256'] and [v[0] for v in ma['volatile']] == [['seconds']]
    run = Cache(tmp_path/'a').load('model', ma['config'])
    assert run['seconds'] == ma['volatile'][0][1] > 0 and list(run) == ['state_dict', 'history', 'seconds', 'records']


def test_gpu_artifacts_are_keyed_by_device(tmp_path, monkeypatch):
    "A result computed on a GPU is never handed to a CPU run (nor the reverse); CPU keys are unchanged."
    import unlearnrepro.core as C
    monkeypatch.setattr(C, 'get_device', lambda prefer=None: torch.device('cpu'))  # the same test on a CPU and a GPU machine
    c, cfg = Cache(tmp_path), {'a': 1}
    cpu_path = c.path('m', cfg)
    assert cpu_path.stem == config_key('m', cfg)  # the key CPU artifacts always had
    c.save('m', cfg, {'w': torch.ones(2)})
    monkeypatch.setattr(C, 'get_device', lambda prefer=None: torch.device('cuda'))
    assert c.keyed(cfg) == {'a': 1, '_device': 'cuda'} and c.path('m', cfg) != cpu_path
    assert c.load('m', cfg) is None  # the CPU artifact is not found under the GPU key
    c.save('m', cfg, {'w': torch.zeros(2)})
    assert torch.equal(c.load('m', cfg)['w'], torch.zeros(2))
    monkeypatch.setattr(C, 'get_device', lambda prefer=None: torch.device('cpu'))
    assert torch.equal(c.load('m', cfg)['w'], torch.ones(2))


def test_deterministic_setting(monkeypatch):
    monkeypatch.delenv('UNLEARNREPRO_DETERMINISTIC', raising=False)
    assert deterministic_setting()  # on by default
    for v in ('0', 'false', 'OFF'):
        monkeypatch.setenv('UNLEARNREPRO_DETERMINISTIC', v); assert not deterministic_setting()
    monkeypatch.setenv('UNLEARNREPRO_DETERMINISTIC', '2')
    with pytest.raises(BadValueError, match="UNLEARNREPRO_DETERMINISTIC='2' is not allowed"): deterministic_setting()


@pytest.mark.parametrize('chapter', ['core', 'data', 'models', 'unlearning'])
def test_importing_any_chapter_fills_every_registry(chapter):
    "As timm's: a fresh process (a Dask worker, a script) that imports one chapter finds every registered name."
    import subprocess, sys
    code = (f"import sys, unlearnrepro.{chapter}\n"  # nothing else imported by hand: the registries are read from what the import loaded
            "m = sys.modules\n"
            "assert 'sgld' in m['unlearnrepro.models'].OPTIMIZERS and 'curvature' in m['unlearnrepro.models'].RECORDERS\n"
            "assert 'sgld_finetune' in m['unlearnrepro.unlearning'].UNLEARNERS and 'del' in m['unlearnrepro.reproduce'].EXPERIMENTS\n"
            "assert 'memorization' in m['unlearnrepro.memorization'].SCORES and 'mia_auc' in m['unlearnrepro.experiment'].STOP_RULES\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

"fit_many beyond the notebook: the Dask path (bit-identical to in-process) and the resumption of a killed job."
import os, re, sys, json, time, signal, subprocess, textwrap
from pathlib import Path
import numpy as np
import pytest
import torch
from unlearnrepro.core import Cache, set_threads, BadValueError
from unlearnrepro.data import load_dataset
from unlearnrepro.models import fit_many, Recipe, RunFailedError, dask_client, dask_map

ROOT = Path(__file__).resolve().parents[1]
MLP = {'name': 'mlp', 'hidden': [32]}
RECIPE = Recipe(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64)


def _runs(n_train, k, frac=0.7):
    rng = np.random.default_rng(0)
    return [dict(seed=s, positions=np.sort(rng.choice(n_train, int(frac * n_train), replace=False))) for s in range(k)]


@pytest.fixture(scope='module')
def client():
    c, close = dask_client(None, 2)  # 2 one-thread workers, as the notebooks start them
    yield c
    for x in close: x.close()


@pytest.mark.parametrize('model_cfg,members', [(MLP, 3), ({'name': 'cnn_small', 'width': 4}, 32)])
def test_dask_is_bit_identical_to_in_process(client, tmp_path, model_cfg, members):
    "Ensembles (MLP, chunks of 3) and models with BatchNorm (small CNN: one by one on the CPU, ensembles on a GPU) give the same bits on 2 workers as here."
    set_threads(1)  # the workers run one torch thread each; so does this process
    dig = load_dataset('digits')
    runs = _runs(len(dig.train), 5)
    here = fit_many(dig, model_cfg, RECIPE, runs, backend='auto', members=members)
    there = fit_many(dig, model_cfg, RECIPE, runs, backend='dask', client=client, members=members, cache=Cache(tmp_path))
    assert [r['engine'] for r in here] == [r['engine'] for r in there]
    for a, b in zip(here, there):
        assert a['seed'] == b['seed'] and np.array_equal(a['positions'], b['positions'])
        assert torch.equal(a['train_probs'], b['train_probs']) and torch.equal(a['test_probs'], b['test_probs'])
    # the workers wrote every run into the shared cache: a rerun trains nothing
    again = fit_many(dig, model_cfg, RECIPE, runs, backend='dask', client=client, members=members, cache=Cache(tmp_path))
    assert all(r['cached'] for r in again)


def test_dask_back_to_back_calls_keep_their_data(client, monkeypatch):
    "Calls in quick succession on the same data (as a benchmark does) scatter it under fresh keys and free it after."
    # Scattered under its content hash, the same data got the same key in every call, and one call's release could
    # free it under the next call's tasks ("lost dependencies": 1 failure in 30 calls here, one in CI). That race is
    # too rare to test directly, so this checks its cause: a key shared between calls.
    keys, scatter = [], client.scatter
    def spy(*a, **k):
        f = scatter(*a, **k); keys.append(f.key); return f
    monkeypatch.setattr(client, 'scatter', spy)
    dig = load_dataset('digits')
    runs = _runs(len(dig.train), 4)
    for _ in range(4):
        out = fit_many(dig, {'name': 'mlp', 'hidden': [16]}, Recipe(epochs=1, lr=0.05, batch_size=64), runs, backend='dask', client=client, members=2)
        assert len(out) == 4
        for _ in range(50):  # releases reach the workers asynchronously
            if not any(client.has_what().values()): break
            time.sleep(0.1)
        assert not any(client.has_what().values()), client.has_what()
    assert len(keys) == 4 and len(set(keys)) == 4, keys


def test_dask_workers_keep_glibc_malloc_defaults(client):
    "The library's clusters unset Dask's MALLOC_TRIM_THRESHOLD_ (torch trains ~2.4x slower with it), here and on the workers."
    assert 'MALLOC_TRIM_THRESHOLD_' not in os.environ
    env = client.run(lambda: (os.environ.get('MALLOC_TRIM_THRESHOLD_'), os.environ.get('UNLEARNREPRO_THREADS')))
    assert len(env) == 2 and set(env.values()) == {(None, '1')}, env


def test_dask_warns_about_a_foreign_cluster_that_trims():
    "A cluster started the Dask default way (its nanny sets the trim threshold) is used, with a warning saying what to set."
    from distributed import Client, LocalCluster
    saved = dict(os.environ)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cl, Client(cl) as c:
            with pytest.warns(UserWarning, match=r'MALLOC_TRIM_THRESHOLD_=65536 .*pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ to null'):
                got, close = dask_client(c)
            assert got is c and close == []
    finally: os.environ.clear(); os.environ.update(saved)  # the nanny also set it in this process


def test_dask_failure_names_the_run(client):
    "A run that diverges on a worker is reported with its seed, not as a bare worker error."
    dig = load_dataset('digits')
    with pytest.raises(RunFailedError, match=r'seed 0 .*loss became'):
        fit_many(dig, MLP, Recipe(epochs=2, lr=1e6, batch_size=64), _runs(len(dig.train), 1), backend='dask', client=client)


def _scaled(data, k, x):  # a task of the dask_map tests (module level: sent to the workers)
    if x < 0: raise ValueError(f"negative x={x}")
    return float(data.sum()) * k + x


def test_dask_map_is_the_one_driver(client):
    "dask_map (used by fit_many and run_jobs): every result once, tagged with its job; the shared data reaches every task."
    got = {}
    dask_map(_scaled, [dict(k=k, x=k) for k in range(5)], lambda i, r: got.__setitem__(i, r), client, shared=dict(data=torch.ones(3)))
    assert got == {k: 4.0 * k for k in range(5)}


def test_dask_map_failure_names_the_task(client):
    "A failing task stops the map with the error `fail` makes of it, or a RunFailedError naming the task; the client stays usable."
    with pytest.raises(RunFailedError, match=r'_scaled: task 1 failed: ValueError: negative x=-1'):
        dask_map(_scaled, [dict(k=1, x=0), dict(k=1, x=-1)], lambda i, r: None, client, shared=dict(data=torch.ones(1)))
    with pytest.raises(KeyError, match='job 0 failed'):
        dask_map(_scaled, [dict(k=1, x=-5)], lambda i, r: None, client, shared=dict(data=torch.ones(1)), fail=lambda i, e: KeyError(f'job {i} failed'))
    got = []
    dask_map(_scaled, [dict(k=2, x=1)], lambda i, r: got.append(r), client, shared=dict(data=torch.ones(2)))
    assert got == [5.0]


def test_bad_runs_fail_before_training():
    dig = load_dataset('digits')
    with pytest.raises(BadValueError, match='runs must be a non-empty list'):
        fit_many(dig, MLP, RECIPE, [])
    with pytest.raises(BadValueError, match="unknown keys \\['seeds'\\]"):
        fit_many(dig, MLP, RECIPE, [dict(seed=0, seeds=[1])])


KILLED = textwrap.dedent('''
    import sys, numpy as np
    from unlearnrepro.core import Cache
    from unlearnrepro.data import load_dataset
    from unlearnrepro.models import fit_many, Recipe
    dig = load_dataset('digits')
    rng = np.random.default_rng(0)
    runs = [dict(seed=s, positions=np.sort(rng.choice(len(dig.train), 1000, replace=False))) for s in range(6)]
    out = fit_many(dig, {'name': 'cnn_small', 'width': 8}, Recipe(epochs=int(sys.argv[2]), lr=0.05, batch_size=64), runs,
                   cache=Cache(sys.argv[1]), backend='serial')
    print('CACHED', sum(r['cached'] for r in out))
''')


def test_killed_fit_many_resumes(tmp_path):
    "Kill a serial fit_many after two runs are stored: the rerun trains only the missing four, and nothing damaged is read."
    script = tmp_path/'job.py'; script.write_text(KILLED)
    cache_dir = tmp_path/'cache'
    env = dict(os.environ, UNLEARNREPRO_QUIET='1', UNLEARNREPRO_THREADS='1')
    p = subprocess.Popen([sys.executable, str(script), str(cache_dir), '12'], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 300:
        done = list((cache_dir/'many').glob('*.pt')) if (cache_dir/'many').exists() else []  # artifacts are written after their sidecars
        if len(done) >= 2 or p.poll() is not None: break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    stored = sorted((cache_dir/'many').glob('*.pt'))
    assert 2 <= len(stored) < 6, f"expected the job to be killed part-way, found {len(stored)} stored runs"
    c = Cache(cache_dir, on_corrupt='raise')
    for f in stored: c._load(f)  # every stored artifact is whole (checksum) and loads with weights_only
    out = subprocess.run([sys.executable, str(script), str(cache_dir), '12'], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"CACHED {len(stored)}" in out.stdout, out.stdout
    assert len(list((cache_dir/'many').glob('*.pt'))) == 6


def test_batchnorm_divergence_raises_and_caches_nothing(tmp_path):
    "Inputs of 1e20 give infinite BatchNorm running variances while the training loss stays finite: training must stop."
    from unlearnrepro.data import TensorData, DataBundle
    from unlearnrepro.models import train, fit, create_model
    dig = load_dataset('digits')
    huge = DataBundle('huge', TensorData(dig.train.x * 1e20, dig.train.y), dig.test, 10, 1, 8, dict(name='huge'))
    with pytest.raises(FloatingPointError, match=r'buffer .*running_var.* became non-finite'):
        train(create_model('cnn_small', 1, 10, 8, seed=0), huge.train, Recipe(epochs=1, lr=0.01, batch_size=64))
    with pytest.raises(FloatingPointError, match='non-finite'):
        fit(huge, {'name': 'cnn_small'}, Recipe(epochs=1, lr=0.01, batch_size=64), cache=Cache(tmp_path))
    assert not list(tmp_path.rglob('*.pt'))  # nothing cached


def test_collapse_is_an_error_not_a_result():
    import torch
    from unlearnrepro.models import check_not_collapsed
    check_not_collapsed(torch.eye(3))  # three classes predicted: fine
    with pytest.raises(FloatingPointError, match='collapsed: it predicts class 1 for every training example'):
        check_not_collapsed(torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.4, 0.6]]))


def test_negative_positions_do_not_wrap():
    from unlearnrepro.core import BadIndicesError
    dig = load_dataset('digits')
    with pytest.raises(BadIndicesError, match='position -1 is outside'):
        dig.train.subset([-1, 0])
    with pytest.raises(BadIndicesError, match=f'position {len(dig.train)} is outside'):
        dig.train.subset([len(dig.train)])


def test_dask_workers_import_the_optimizer_chapter(client):
    "A recipe with the SGLD optimizer (registered by the privacy chapter) trains on workers that never imported that chapter."
    import unlearnrepro.privacy  # registers 'sgld' here; the workers learn where it lives from the registry
    set_threads(1)
    dig = load_dataset('digits')
    rc = Recipe(epochs=2, lr=0.05, batch_size=64, optimizer='sgld', opt_kw={'sigma': 0.01})
    runs = _runs(len(dig.train), 2)
    here = fit_many(dig, MLP, rc, runs, backend='serial')
    there = fit_many(dig, MLP, rc, runs, backend='dask', client=client)
    for a, b in zip(here, there): assert torch.equal(a['train_probs'], b['train_probs'])


def test_every_registered_model_runs_forward():
    "Every model in MODELS, resnet50 included (100 classes, as for CIFAR-100), on a 32x32 batch of 2."
    from unlearnrepro.models import MODELS, create_model
    x = torch.randn(2, 3, 32, 32)
    kws = {'resnet_cifar': {'depth': 8}, 'vit': {'dim': 32, 'mlp_dim': 64, 'depth': 1, 'heads': 2}}
    assert {'mlp', 'cnn_small', 'resnet_cifar', 'resnet18', 'resnet50', 'vit'} <= set(MODELS.names())
    for name in MODELS.names():
        C = 100 if name == 'resnet50' else 10
        with torch.no_grad(): assert create_model(name, 3, C, 32, seed=0, **kws.get(name, {}))(x).shape == (2, C), name


def test_create_model_refuses_bad_seeds():
    from unlearnrepro.models import create_model
    for bad in (1.5, True, -1, np.float64(1.0)):
        with pytest.raises(BadValueError, match=re.escape(f'seed={bad!r} is not allowed')): create_model('mlp', 1, 10, 8, seed=bad)
    a, b = create_model('mlp', 1, 10, 8, seed=np.int64(2)), create_model('mlp', 1, 10, 8, seed=2)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_positions_that_are_not_integers():
    from unlearnrepro.core import BadIndicesError
    from unlearnrepro.models import check_positions
    for bad, shown in (([1.7, 3], '1.7'), ([True, 3], 'True'), (np.array([2.0]), '2.0')):
        with pytest.raises(BadIndicesError, match=f'positions holds {shown}'): check_positions(bad, 10)
    assert check_positions(torch.tensor([3, 1]), 10).tolist() == [3, 1]


def test_stale_diverged_model_in_the_cache_is_recomputed(tmp_path):
    "A stored fit whose BatchNorm variance is inf (written under the real key) is not served: warning naming the file, then retrained."
    import warnings
    from unlearnrepro.core import CorruptArtifactError
    from unlearnrepro.models import fit
    dig = load_dataset('digits', n_train=300)
    args = (dig, {'name': 'cnn_small', 'width': 4}, Recipe(epochs=1, lr=0.05, batch_size=64))
    c = Cache(tmp_path)
    m1, _ = fit(*args, seed=0, cache=c)
    (p,) = (tmp_path/'model').glob('*.pt')
    key = json.loads(p.with_suffix('.pt.json').read_text())['config']
    art = c.load('model', key); art['state_dict']['1.running_var'].fill_(float('inf'))
    assert c.save('model', key, art) == p  # the real key: a fit with these arguments reads exactly this file
    with pytest.raises(CorruptArtifactError, match=f'{p} holds a diverged model: 1.running_var is not finite'):
        fit(*args, seed=0, cache=Cache(tmp_path, on_corrupt='raise'))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter('always'); m2, _ = fit(*args, seed=0, cache=c)
    assert any(str(p) in str(w.message) and 'diverged' in str(w.message) and 'recomputing' in str(w.message) for w in got)
    assert (c.hits, c.misses) == (0, 2)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    assert all(torch.isfinite(v).all() for v in c.load('model', key)['state_dict'].values() if v.is_floating_point())
    with warnings.catch_warnings():
        warnings.simplefilter('error'); fit(*args, seed=0, cache=c)  # and now a plain hit
    assert c.hits == 1


def _f64(data):
    "The dataset with float64 inputs (train in float64 with torch.set_default_dtype(torch.float64))."
    from dataclasses import replace
    from unlearnrepro.data import TensorData
    return replace(data, train=TensorData(data.train.x.double(), data.train.y, data.train.idx),
                   test=TensorData(data.test.x.double(), data.test.y, data.test.idx))


def test_batchnorm_ensemble_is_each_model_trained_alone():
    "A ResNet-8 (BatchNorm in every block) as a 3-member ensemble: each member's weights, running statistics, batch count and history are its model's trained alone (float64: see chapter 02 on float32)."
    from unlearnrepro.models import _fit_ensemble, _train_ensemble, train, model_for, predict
    dig = _f64(load_dataset('digits'))
    cfg, rc = {'name': 'resnet_cifar', 'depth': 8, 'width': 0.5}, Recipe(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64)
    runs = _runs(len(dig.train), 3)
    torch.set_default_dtype(torch.float64)
    try:
        _, P, B, H = _fit_ensemble(dig, cfg, rc, runs)
        outs = _train_ensemble(dig, cfg, rc, runs)
        alone = [train(model_for(dig, cfg, seed=r['seed']), dig.train.subset(r['positions']), rc, seed=r['seed']) for r in runs]
    finally: torch.set_default_dtype(torch.float32)
    assert {n for n in B if n.endswith('running_var')} == {n for n, _ in alone[0][0].named_buffers() if n.endswith('running_var')}
    for k, (m, h) in enumerate(alone):
        for n, v in m.state_dict().items():
            got = (P | B)[n][k]
            if n.endswith('num_batches_tracked'): assert int(got) == int(v) == 2 * -(-len(runs[k]['positions']) // 64), n  # one per step
            else: assert (got - v).abs().max() <= 1e-10 * max(v.abs().max().item(), 1e-3), n
        assert [(a['epoch'], a['lr'], a['acc']) for a in H[k]] == [(b['epoch'], b['lr'], b['acc']) for b in h]
        assert all(abs(a['loss'] - b['loss']) <= 1e-10 * max(1.0, abs(b['loss'])) for a, b in zip(H[k], h))  # float64, relative
        assert torch.allclose(outs[k]['train_probs'], predict(m, dig.train)['probs'].float(), atol=1e-5)  # eval mode: its own statistics (float32 probabilities in [0, 1])


def test_ensemble_divergence_names_the_member():
    "A non-finite loss (found at the end of the epoch) and non-finite BatchNorm statistics in an ensemble name the member's seed."
    from unlearnrepro.models import _fit_ensemble
    dig = load_dataset('digits')
    with pytest.raises(RunFailedError, match=r'ensemble member seed \d+: the loss became (nan|inf|-inf) in epoch 0; lower the learning rate'):
        fit_many(dig, MLP, Recipe(epochs=2, lr=1e6, batch_size=64), _runs(len(dig.train), 2), backend='vmap')
    from dataclasses import replace
    from unlearnrepro.data import TensorData
    huge = replace(dig, train=TensorData(dig.train.x * 1e20, dig.train.y))  # finite loss, infinite running variances
    with pytest.raises(FloatingPointError, match=r'ensemble member seed 0: the buffer 1.running_var \(BatchNorm statistics\) became non-finite in epoch 0'):
        _fit_ensemble(huge, {'name': 'cnn_small', 'width': 4}, Recipe(epochs=1, lr=0.01, batch_size=64), _runs(len(dig.train), 2))


def _env_of_workers():  # run on each worker
    return os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('UNLEARNREPRO_THREADS'), os.environ.get('MALLOC_TRIM_THRESHOLD_')


def test_several_gpus_one_worker_each(monkeypatch):
    "With several GPUs (faked here: the workers only read CUDA_VISIBLE_DEVICES) dask_client starts one worker per GPU, each seeing only its own."
    import unlearnrepro.models as M
    monkeypatch.setattr(M, '_visible_gpus', lambda: ['3', '5'])  # as CUDA_VISIBLE_DEVICES=3,5 would name them
    monkeypatch.setattr(M, '_have_dask_cuda', lambda: False)
    c, close = dask_client()
    try:
        env = c.run(_env_of_workers)
        assert sorted(env.values()) == [('3', '1', None), ('5', '1', None)], env
        info = c.scheduler_info()
        assert [w['nthreads'] for w in info['workers'].values()] == [1, 1]
        assert all(a.startswith('tcp://127.0.0.1:') for a in [info['address'], *info['workers']]), info['address']  # this machine only
    finally:
        for x in close: x.close()


class _FakeCUDACluster:
    "Stands in for dask_cuda.LocalCUDACluster: records its arguments and, like it, gives its workers an environment of its own."
    seen = {}
    def __new__(cls, CUDA_VISIBLE_DEVICES, **kw):
        from distributed import LocalCluster
        cls.seen = dict(CUDA_VISIBLE_DEVICES=CUDA_VISIBLE_DEVICES, **kw)
        return LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40,
                            env={'UNLEARNREPRO_THREADS': 'auto'})


def test_dask_cuda_cluster_gets_our_worker_environment(monkeypatch):
    "dask_cuda's cluster sets its workers' environment itself (CUDA_VISIBLE_DEVICES only): dask_client puts ours back on them."
    import types
    import unlearnrepro.models as M
    monkeypatch.setitem(sys.modules, 'dask_cuda', types.SimpleNamespace(LocalCUDACluster=_FakeCUDACluster))
    monkeypatch.setattr(M, '_visible_gpus', lambda: ['3', '5'])
    monkeypatch.setattr(M, '_have_dask_cuda', lambda: True)
    c, close = dask_client()
    try:
        assert _FakeCUDACluster.seen['CUDA_VISIBLE_DEVICES'] == '3,5' and _FakeCUDACluster.seen['threads_per_worker'] == 1
        assert list(c.run(_env_of_workers).values()) == [(None, '1', None)]
        assert list(c.run(torch.get_num_threads).values()) == [1]
    finally:
        for x in close: x.close()

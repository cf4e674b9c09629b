"Bad data and a bad environment get a clear error naming the problem and the split, file or path, before any training."
import os, sys, time, subprocess, textwrap, copy
from pathlib import Path
import numpy as np, torch, pytest, yaml
import unlearnrepro.data as D
from unlearnrepro.core import *
from unlearnrepro.data import *
from unlearnrepro.models import *
from unlearnrepro.localization import localize
from unlearnrepro.unlearning import unlearn
from unlearnrepro.tuning import tuned_values

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(epochs=1, lr=0.05, batch_size=64)

@pytest.fixture(scope='module')
def dig(): return load_dataset('digits', n_train=200, n_test=100)

@pytest.fixture(scope='module')
def net(dig): return model_for(dig, {'name': 'cnn_small', 'width': 4}, seed=0)

def _with(d:TensorData, x=None, y=None, idx=None):
    "A copy of `d` with some of its tensors replaced (no checks run on construction beyond the types)."
    return TensorData(d.x.clone() if x is None else x, d.y.clone() if y is None else y, d.idx.clone() if idx is None else idx)

def _nan_at(d, i=3, v=float('nan')):
    x = d.x.clone(); x[i, 0, 0, 0] = v; return _with(d, x=x)

def _state(m): return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}

def _same(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise: nothing was trained


def test_tensordata_types():
    with pytest.raises(BadValueError, match='x must hold floating-point inputs, got torch.int64'): TensorData(torch.zeros(3, 1, 2, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(BadValueError, match='y must be a 1-d tensor of integer class labels, got torch.float32'): TensorData(torch.zeros(3, 1, 2, 2), torch.zeros(3))
    with pytest.raises(BadValueError, match='differ in length'): TensorData(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize('v', [float('nan'), float('inf'), -float('inf')])
def test_nonfinite_inputs(dig, net, v):
    bad = _nan_at(dig.train, 3, v)
    with pytest.raises(BadValueError, match=r"the forget set has 1 example\(s\) with a NaN or infinite input, the first at position 3 \(idx 3\)"):
        bad.check('the forget set')
    with pytest.raises(BadValueError, match="the train split of toy has 1 example"):
        DataBundle('toy', bad, dig.test, 10, 1, 8)
    m = copy.deepcopy(net); before = _state(m)
    with pytest.raises(BadValueError, match="the training data of 'train' has 1 example.*NaN or infinite input") as e:
        train(m, bad, RECIPE)
    assert 'learning rate' not in str(e.value)  # the old, misleading advice
    assert _same(before, _state(m))  # nothing trained, the model is as it was
    with pytest.raises(BadValueError, match='the forget set has 1 example'): localize('del', net, bad.subset(range(10)), 0.1)
    with pytest.raises(BadValueError, match='the forget set has 1 example'): unlearn('finetune', net, dig.train.subset(range(20, 60)), bad.subset(range(10)), epochs=1)
    with pytest.raises(BadValueError, match='the retain set has 1 example'): unlearn('finetune', net, bad.subset(range(60)), dig.train.subset(range(100, 110)), epochs=1)


def test_labels_outside_the_classes(dig, net):
    y = dig.train.y.clone(); y[5] = 10
    with pytest.raises(BadValueError, match=r"the train split of toy has label 10 at position 5 \(1 such\); labels must lie in \[0, 10\)"):
        DataBundle('toy', _with(dig.train, y=y), dig.test, 10, 1, 8)
    y[5] = -1
    with pytest.raises(BadValueError, match=r"has label -1 at position 5"): train(copy.deepcopy(net), _with(dig.train, y=y), RECIPE)
    three = create_model('cnn_small', 1, 3, 8, seed=0, width=4)  # a model with 3 classes sees labels up to 9
    with pytest.raises(BadValueError, match=r"the training data of 'train' has label \d at position \d+ \(\d+ such\); labels must lie in \[0, 3\) for 3 classes"):
        train(three, dig.train, RECIPE)
    with pytest.raises(BadValueError, match=r'the forget set has label \d .* \[0, 3\)'): localize('salloc', three, dig.train.subset(range(30)), 0.1)


def test_shapes_that_do_not_fit_the_model(dig, net):
    rgb = TensorData(torch.randn(20, 3, 8, 8), dig.train.y[:20])
    with pytest.raises(BadValueError, match=r"the training data of 'train' has inputs of shape \(3, 8, 8\), which the model \(\w+\) cannot take"):
        train(copy.deepcopy(net), rgb, RECIPE)
    with pytest.raises(BadValueError, match=r"the forget set has inputs of shape \(3, 8, 8\)"): localize('del', net, rgb, 0.1)
    with pytest.raises(BadValueError, match=r"the forget set has inputs of shape \(3, 8, 8\)"): unlearn('finetune', net, dig.train.subset(range(20, 60)), rgb, epochs=1)
    with pytest.raises(BadValueError, match='the train and test splits differ in input shape'): DataBundle('toy', dig.train, rgb, 10, 1, 8)


def test_forget_and_retain_share_examples_or_repeat_one(dig, net):
    f, r = dig.train.subset(range(10)), dig.train.subset(range(5, 60))
    with pytest.raises(BadIndicesError, match=r'index 5 is in both the forget and the retain set \(5 overlap\)'): unlearn('finetune', net, r, f, epochs=1)
    twice = dig.train.subset([0, 1, 2, 2, 3])
    with pytest.raises(BadIndicesError, match='the forget set holds example idx 2 2 times'): unlearn('finetune', net, dig.train.subset(range(20, 60)), twice, epochs=1)
    with pytest.raises(BadIndicesError, match='the forget set holds example idx 2 2 times'): localize('del', net, twice, 0.1)
    with pytest.raises(BadIndicesError, match="the training data of 'train' holds example idx 2 2 times"): train(copy.deepcopy(net), twice, RECIPE)
    with pytest.raises(BadIndicesError, match='the train split of toy holds example idx'): DataBundle('toy', twice, dig.test, 10, 1, 8)


def test_empty_splits(dig, net):
    empty = dig.train.subset([])
    with pytest.raises(BadIndicesError, match='the test split of toy is empty'): DataBundle('toy', dig.train, empty, 10, 1, 8)
    with pytest.raises(BadIndicesError, match="the training data of 'train' is empty"): train(copy.deepcopy(net), empty, RECIPE)
    with pytest.raises(BadIndicesError, match='the forget set is empty'): localize('del', net, empty, 0.1)
    with pytest.raises(BadIndicesError, match='the retain set is empty'): unlearn('finetune', net, empty, dig.train.subset(range(5)), epochs=1)


def test_fit_many_checks_its_data_before_training(dig, tmp_path):
    "A bundle damaged after it was made: fit_many refuses it before any run trains (nothing is cached)."
    d = copy.copy(dig); d.train = _nan_at(dig.train, 7)
    with pytest.raises(BadValueError, match=r'the train split of digits has 1 example.*position 7'):
        fit_many(d, {'name': 'mlp', 'hidden': [8]}, RECIPE, [dict(seed=0), dict(seed=1)], cache=Cache(tmp_path), backend='serial')
    assert not any(tmp_path.rglob('*.pt'))


def test_unusable_cache_location(tmp_path):
    f = tmp_path/'a-file'; f.write_text('not a folder')
    with pytest.raises(BadValueError, match=f"the cache folder {f}/cache is not usable: {f} is a file, not a folder; set UNLEARNREPRO_CACHE"):
        Cache(f/'cache')
    with pytest.raises(BadValueError, match=f"the cache folder {f} is not usable"): Cache(f)
    Cache(tmp_path/'new'/'deeper')  # a folder that can be made: fine, and nothing is created yet
    assert not (tmp_path/'new').exists()


@pytest.mark.parametrize('text,msg', [('a: [unclosed\n', 'is damaged'), ('- just\n- a list\n', 'holds a list, not a mapping'),
                                      ('del/rft: 3\n', "bad entry 'del/rft'"), ('del/rft: {lr: .nan}\n', "bad entry 'del/rft'"),
                                      ('del/rft: {lr: {nested: 1}}\n', "bad entry 'del/rft'")])
def test_damaged_or_hand_edited_hyperparameter_yaml(tmp_path, text, msg):
    p = tmp_path/'del_cpu.yaml'; p.write_text(text)
    with pytest.raises(BadValueError, match=f"the hyperparameter file {p} .*{msg}"): tuned_values(p, ['del/rft'])


def test_the_committed_hyperparameter_files_read():
    for p in sorted((ROOT/'nbs'/'hparams').glob('*.yaml')):
        d = yaml.safe_load(p.read_text())
        assert tuned_values(p, list(d)) == d


def test_missing_dataset_with_downloads_off_fails_fast_and_says_where(tmp_path, monkeypatch):
    monkeypatch.setattr(D, 'DEBIAN_FMNIST', tmp_path/'no-debian-package')
    monkeypatch.setenv('UNLEARNREPRO_DOWNLOAD', '0'); monkeypatch.setenv('UNLEARNREPRO_DATA', str(tmp_path/'data'))
    t0 = time.perf_counter()
    with pytest.raises(DataNotFoundError, match=f"Put cifar-10-batches-py/ in {tmp_path/'data'}.*allow the download"): load_dataset('cifar10')
    with pytest.raises(DataNotFoundError, match=f"Put train_32x32.mat and test_32x32.mat in {tmp_path/'data'}"): load_dataset('svhn')
    with pytest.raises(DataNotFoundError, match='point UNLEARNREPRO_DATA at the IDX files'): load_dataset('fashion_mnist')
    assert time.perf_counter() - t0 < 10  # seconds, not a download attempt
    assert not (tmp_path/'data').exists()  # nothing written


def test_dask_from_a_script_without_a_main_guard(tmp_path):
    "Dask spawns its workers, which import the main script: without the guard the user is told what to do."
    script = tmp_path/'no_guard.py'
    script.write_text(textwrap.dedent('''
        from unlearnrepro.data import load_dataset
        from unlearnrepro.models import fit_many, Recipe
        d = load_dataset('digits', n_train=50, n_test=20)
        fit_many(d, {'name': 'mlp', 'hidden': [8]}, Recipe(epochs=1, lr=0.05, batch_size=16), [dict(seed=0)], backend='dask')
        '''))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)  # the checkout first, and whatever else the caller has
    env = dict(os.environ, UNLEARNREPRO_QUIET='1', PYTHONPATH=path, UNLEARNREPRO_DEVICE='cpu')  # about the guard, not the device
    env.pop('UNLEARNREPRO_DASK_SCHEDULER', None)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode != 0
    # the caller's error says what to do (the worker that re-ran the script raises the same advice in its own process; whether its
    # traceback reaches this stderr depends on how Dask forwards worker output, so only the caller's error is asserted)
    caller = [l for l in r.stderr.splitlines() if l.startswith('RuntimeError: could not start a local Dask cluster')]  # Dask may log more after it
    assert caller and "put the script's code under `if __name__ == '__main__':`" in caller[-1], r.stderr[-3000:]

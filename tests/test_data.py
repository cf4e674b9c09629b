"Dataset loaders (real on-disk formats, written by the tests), forget-set validation and bad input."
import pickle, numpy as np, torch, pytest
from pathlib import Path
import unlearnrepro.data as D
from unlearnrepro.core import *
from unlearnrepro.data import *
from unlearnrepro.models import create_model

def test_unknown_names():
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist2'; choose one of: cifar10, cifar100, digits, fashion_mnist, svhn"): load_dataset('mnist2')
    with pytest.raises(UnknownNameError, match="unknown model 'lenet'"): create_model('lenet', 1, 10, 8)
    with pytest.raises(UnknownNameError, match="unknown forget-set builder 'oops'"): make_forget_set(load_dataset('digits'), 'oops')

@pytest.mark.parametrize('forget,msg', [([], 'empty'), ([0, 10_000], 'forget index 10000 is out of range'),
                                        ([-3], 'forget index -3 is out of range'), ([4, 4, 5], 'forget index 4 appears 2 times'),
                                        ([1.5], 'must be integers')])
def test_bad_forget_indices(forget, msg):
    with pytest.raises(BadIndicesError, match=msg): check_split(np.array(forget), 1000)

def test_overlapping_retain():
    with pytest.raises(BadIndicesError, match='in both the forget and the retain set'): check_split([1, 2], 10, retain=[2, 3])
    with pytest.raises(BadIndicesError, match='retain set is empty'): check_split(np.arange(10), 10)

@pytest.mark.parametrize('frac', [0, 1, 1.5, -0.2])
def test_fraction_outside_open_interval(frac, tmp_path):
    d = load_dataset('digits'); c = Cache(tmp_path/'c')
    with pytest.raises(BadValueError, match=f'frac={frac!r}'): make_forget_set(d, 'iid', c, frac=frac)
    with pytest.raises(BadValueError, match=f'frac={frac!r}'): make_forget_set(d, 'non_iid', c, frac=frac, classes=[2, 5])
    assert not (tmp_path/'c').exists() or not any((tmp_path/'c').rglob('*.npy'))  # nothing written

def test_forget_sets_cached_as_npy(tmp_path):
    d = load_dataset('digits'); c = Cache(tmp_path)
    f = make_forget_set(d, 'non_iid', c, frac=0.1, classes=[2, 5], seed=3)
    files = list((tmp_path/'forget').glob('*.npy'))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), f)
    assert set(d.train.y[f].tolist()) == {2, 5} and abs(len(f) - 0.1 * len(d.train)) < 1

def test_missing_data_with_network_off(tmp_path, monkeypatch):
    monkeypatch.setattr(D, 'DEBIAN_FMNIST', tmp_path/'no-debian-package')
    monkeypatch.delenv('UNLEARNREPRO_DATA', raising=False)
    with pytest.raises(DataNotFoundError, match='download is off'): load_dataset('fashion_mnist', root=str(tmp_path/'nothing'), download=False)
    monkeypatch.setenv('UNLEARNREPRO_DOWNLOAD', '0')
    with pytest.raises(DataNotFoundError, match='download is off'): load_dataset('fashion_mnist', root=str(tmp_path/'nothing'))
    with pytest.raises(DataNotFoundError, match='CIFAR10 not found'): load_dataset('cifar10', root=str(tmp_path/'nothing'))
    with pytest.raises(DataNotFoundError, match='SVHN not found'): load_dataset('svhn', root=str(tmp_path/'nothing'))
    assert not (tmp_path/'nothing').exists() or not any((tmp_path/'nothing').rglob('*'))  # nothing written

@pytest.mark.skipif(not Path('/usr/share/datasets/fashion-mnist').exists(), reason='Debian package dataset-fashion-mnist not installed')
def test_fashion_mnist_from_debian_files(monkeypatch):
    monkeypatch.delenv('UNLEARNREPRO_DATA', raising=False)
    d = load_dataset('fashion_mnist', n_train=1000, n_test=200, download=False)
    assert d.train.x.shape == (1000, 1, 28, 28) and len(d.test) == 200 and d.n_classes == 10
    assert np.bincount(d.train.y.numpy()).tolist() == [100] * 10  # stratified subset
    full = D._fashion_mnist(download=False)
    assert full[0].shape == (60000, 1, 28, 28) and full[2].shape == (10000, 1, 28, 28)

def _no_md5(monkeypatch, module, cls):
    "torchvision verifies md5 sums of the real files; the small files written here cannot match them."
    monkeypatch.setattr(module, 'check_integrity', lambda *a, **k: True)
    monkeypatch.setattr(cls, '_check_integrity', lambda self: True)

def test_cifar10_loader_on_real_format(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tvc
    _no_md5(monkeypatch, tvc, tvc.CIFAR10)
    base = tmp_path/'cifar-10-batches-py'; base.mkdir()
    rng = np.random.default_rng(0)
    def batch(name, n, offset):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8); labels = [(i + offset) % 10 for i in range(n)]
        with open(base/name, 'wb') as f: pickle.dump({'data': data, 'labels': labels, 'batch_label': name}, f)
        return data, labels
    tr = [batch(f'data_batch_{i}', 20, i) for i in range(1, 6)]
    te = batch('test_batch', 30, 0)
    with open(base/'batches.meta', 'wb') as f: pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, f)
    d = load_dataset('cifar10', root=str(tmp_path), download=False)
    assert d.train.x.shape == (100, 3, 32, 32) and d.test.x.shape == (30, 3, 32, 32) and (d.in_ch, d.img_size) == (3, 32)
    assert d.train.y.tolist() == sum((l for _, l in tr), [])
    # channel layout: CIFAR stores 1024 red, then green, then blue values per image, row-major
    raw = torch.tensor(tr[0][0][0].reshape(3, 32, 32), dtype=torch.float32)
    x0 = d.train.x[0]
    assert np.corrcoef(x0.flatten(), raw.flatten())[0, 1] > 0.99

def test_cifar100_loader_on_real_format(tmp_path, monkeypatch):
    "CIFAR-100's python version: one 'train' and one 'test' pickle with fine and coarse labels, and a 'meta' file."
    import torchvision.datasets.cifar as tvc
    _no_md5(monkeypatch, tvc, tvc.CIFAR100)
    base = tmp_path/'cifar-100-python'; base.mkdir()
    rng = np.random.default_rng(0)
    def split(name, n):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8); fine = [(7 * i) % 100 for i in range(n)]
        with open(base/name, 'wb') as f:
            pickle.dump({'data': data, 'fine_labels': fine, 'coarse_labels': [l // 5 for l in fine], 'filenames': [f'{i}.png' for i in range(n)]}, f)
        return data, fine
    tr, te = split('train', 120), split('test', 40)
    with open(base/'meta', 'wb') as f: pickle.dump({'fine_label_names': [f'f{i}' for i in range(100)], 'coarse_label_names': [f'c{i}' for i in range(20)]}, f)
    d = load_dataset('cifar100', root=str(tmp_path), download=False)
    assert d.n_classes == 100 and d.train.x.shape == (120, 3, 32, 32) and len(d.test) == 40
    assert d.train.y.tolist() == tr[1] and d.test.y.tolist() == te[1]  # the fine labels
    raw = torch.tensor(tr[0][3].reshape(3, 32, 32), dtype=torch.float32)
    assert np.corrcoef(d.train.x[3].flatten(), raw.flatten())[0, 1] > 0.99

def test_svhn_loader_on_real_format(tmp_path, monkeypatch):
    import scipy.io, torchvision.datasets.svhn as tvs
    _no_md5(monkeypatch, tvs, tvs.SVHN)
    rng = np.random.default_rng(0)
    for split, n in [('train', 40), ('test', 20)]:
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # SVHN labels 1..10, 10 meaning digit 0
        scipy.io.savemat(tmp_path/f'{split}_32x32.mat', {'X': X, 'y': y})
    d = load_dataset('svhn', root=str(tmp_path), download=False)
    assert d.train.x.shape == (40, 3, 32, 32) and len(d.test) == 20
    assert d.train.y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # label 10 -> 0


@pytest.mark.parametrize('retain,msg', [([1.7, 5], 'the retain set holds 1.7'), ([2.0, 5], 'the retain set holds 2.0'),
                                        ([True, 5], 'the retain set holds True'), (np.array([0.5]), 'the retain set holds 0.5'),
                                        ([-1, 5], 'retain index -1 is out of range'), ([100], 'retain index 100 is out of range'),
                                        ([3, 3], 'retain index 3 appears 2 times')])
def test_bad_retain_indices(retain, msg):
    "Never truncated (1.7 -> 1), read as 0/1 (True) or wrapped around (-1 -> n-1): refused, naming the value."
    with pytest.raises(BadIndicesError, match=msg.replace('.', '\\.')): check_split([0], 100, retain=retain)

@pytest.mark.parametrize('forget,msg', [([True, 3], 'the forget set holds True'), (np.array([True]), 'the forget set holds True'),
                                        (np.array([1.0, 2.0]), 'the forget set holds 1.0'), (torch.tensor([0.5]), 'the forget set holds 0.5')])
def test_forget_indices_that_are_not_integers(forget, msg):
    with pytest.raises(BadIndicesError, match=msg.replace('.', '\\.')): check_split(forget, 100)

def test_integer_positions_of_any_integer_type():
    f, r = check_split(torch.tensor([5, 1]), 10, retain=np.array([0, 2], dtype=np.int32))
    assert f.tolist() == [1, 5] and r.tolist() == [0, 2] and f.dtype == r.dtype == np.int64
    assert integer_positions([np.int64(3), 4]).tolist() == [3, 4]

def test_forget_quantile_checks_m_and_nan():
    sc = np.arange(20.)
    for m, msg in [(1.5, 'm=1.5 is not allowed: it must be an integer in [1, 20]'), (True, 'm=True'), (0, 'm=0'), (21, 'm=21')]:
        with pytest.raises(BadValueError) as e: forget_quantile(sc, m)
        assert msg in str(e.value)
    with pytest.raises(BadValueError, match='scores hold 20 NaN of 20'): forget_quantile(np.full(20, np.nan), 3)
    # a single NaN would have sorted above every number: the 'last' (most memorized) set would have picked it
    with pytest.raises(BadValueError, match='scores hold 1 NaN of 20 \\(first at position 4\\)'): forget_quantile(np.where(sc == 4, np.nan, sc), 2, 'last')
    with pytest.raises(BadValueError, match='NaN'): forget_memorization(np.r_[np.nan, sc[1:]], 3, 'low')
    assert forget_quantile(sc, np.int64(2), 'last').tolist() == [18, 19]

@pytest.mark.parametrize('kw,msg', [(dict(kind='iid', seed=True), 'seed=True'), (dict(kind='iid', seed=1.5), 'seed=1.5'),
                                    (dict(kind='iid', seed=-1), 'seed=-1'), (dict(kind='non_iid', seed=1.5), 'seed=1.5'),
                                    (dict(kind='quantile', m=1.5, scores=True), 'm=1.5'), (dict(kind='quantile', m=True, scores=True), 'm=True'),
                                    (dict(kind='quantile', m=3, scores='nan'), 'NaN')])
def test_make_forget_set_checks_before_the_cache(kw, msg, tmp_path):
    "Bad arguments fail before the cache is read, even where an older version stored an artifact under them."
    d = load_dataset('digits'); c = Cache(tmp_path); kw = dict(kw); kind = kw.pop('kind')
    if 'scores' in kw: kw['scores'] = np.full(len(d.train), np.nan) if kw['scores'] == 'nan' else np.arange(len(d.train), dtype=float)
    cfg = dict(data=d.config, kind=kind, **{k: v for k, v in kw.items() if k != 'scores'})
    if 'scores' in kw: cfg['scores_sha'] = content_hash(kw['scores'].astype(np.float64))
    c.save('forget', cfg, np.arange(3), ext='.npy')  # what an unchecked older version could have stored
    with pytest.raises(BadValueError, match=msg): make_forget_set(d, kind, c, **kw)
    assert c.hits == 0

def test_make_forget_set_accepts_numpy_seeds(tmp_path):
    d = load_dataset('digits')
    assert np.array_equal(make_forget_set(d, 'iid', Cache(tmp_path), seed=np.int64(4)), make_forget_set(d, 'iid', seed=4))

def test_subset_and_split_seeds_are_checked():
    with pytest.raises(BadValueError, match='seed=1.5'): stratified_subset(np.repeat(np.arange(3), 10), 6, seed=1.5)
    with pytest.raises(BadValueError, match='split_seed=True'): load_dataset('digits', split_seed=True)
    with pytest.raises(BadValueError, match='subset_seed=-1'): load_dataset('digits', n_train=100, subset_seed=-1)

"The `unlearnrepro` command end to end: papermill runs the quickstart at `tiny` and writes its figure and tables."
import os, subprocess, sys, json
from pathlib import Path
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _cli(*args, env=None):
    exe = Path(sys.executable).parent/'unlearnrepro'
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT, timeout=900)

def test_list():
    r = _cli('reproduce', '--list')
    assert r.returncode == 0 and 'quickstart' in r.stdout and '10_quickstart.ipynb' in r.stdout

def test_quickstart_tiny_writes_results(tmp_path, tmp_cache):
    out, runs = tmp_path/'figs', tmp_path/'runs'
    r = _cli('reproduce', '--only', 'quickstart', '--out', str(out), '--runs', str(runs), '-p', 'seeds=[0]')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'quickstart done in' in r.stdout
    d = out/'tiny'/'quickstart'
    for f in ['accuracies.png', 'accuracies.csv', 'accuracies.md', 'accuracies_per_seed.csv']:
        assert (d/f).stat().st_size > 0, f
    # the injected parameters took effect: one seed (the preset default is three), results under --out
    per_seed = pd.read_csv(d/'accuracies_per_seed.csv')
    assert sorted(per_seed.seed.unique()) == [0]
    assert set(per_seed.forget_set) == {'IID', 'non-IID'} and set(per_seed.model) == {'original', 'oracle'}
    nb = json.loads((runs/'tiny'/'10_quickstart.ipynb').read_text())
    tags = [c.get('metadata', {}).get('tags', []) for c in nb['cells']]
    assert any('injected-parameters' in t for t in tags) and any('parameters' in t for t in tags)
    assert any(f.name.endswith('.pt') for f in (tmp_cache/'original').iterdir())  # the cache was used
    # a second run reuses every artifact: no new cache files
    before = sorted(p.name for p in tmp_cache.rglob('*'))
    r2 = _cli('reproduce', '--only', 'quickstart', '--out', str(out), '--runs', str(runs), '-p', 'seeds=[0]')
    assert r2.returncode == 0 and sorted(p.name for p in tmp_cache.rglob('*')) == before

def test_failure_names_notebook_and_cell(tmp_path, tmp_cache):
    r = _cli('reproduce', '--only', 'quickstart', '--out', str(tmp_path/'f'), '--runs', str(tmp_path/'r'), '-p', 'forget_frac=2.0', '-p', 'seeds=[0]')
    assert r.returncode == 1
    assert '10_quickstart.ipynb failed in cell' in r.stderr and 'frac=2.0' in r.stderr

def test_bad_arguments_exit_2():
    for args in (['--preset', 'huge'], ['--only', 'nope']):
        r = _cli('reproduce', *args)
        assert r.returncode == 2 and 'choose one of' in r.stderr

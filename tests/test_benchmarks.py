"Benchmarks notebook (90_benchmarks) beyond its own cells: bad parameters fail before any work, and the committed cpu results (once made) are complete."
import os, subprocess, sys, math
from pathlib import Path
import nbformat, pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'90_benchmarks.ipynb'
ROWS = 2 + 4 + 1 + 2 + 6 + 1 + 1 + 1  # rows of the notebook besides one per unlearning method

def _papermill(tmp_path, params:dict):
    "Run the notebook with papermill at tiny with `params`; returns (ok, output)."
    code = ("import sys, papermill as pm\n"
            "from papermill.exceptions import PapermillExecutionError\n"
            f"p = dict({params!r}, out_dir={str(tmp_path/'f')!r})\n"
            f"try: pm.execute_notebook({str(NB)!r}, {str(tmp_path/'out.ipynb')!r}, parameters=p, kernel_name='python3', language='python', cwd={str(NB.parent)!r}, progress_bar=False)\n"
            "except PapermillExecutionError as e: print(f'failed in cell {e.exec_count}: {e.ename}: {e.evalue}', file=sys.stderr); sys.exit(1)\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    return r.returncode == 0, r.stdout + r.stderr

def test_bad_parameters_fail_before_any_work_papermill(tmp_path, tmp_cache):
    "The notebook as `unlearnrepro reproduce` runs it: repeats=0 stops in the parameter check, nothing trained, nothing written."
    ok, out = _papermill(tmp_path, dict(preset='tiny', repeats=0, passed=['repeats']))
    assert not ok and "repeats=0 is not allowed" in out, out[-3000:]
    assert not any(tmp_cache.rglob('*.pt')) and not (tmp_path/'f'/'tiny'/'benchmarks').exists()

def _cells():
    "Sources of the notebook up to its parameter check: the imports, and the cells tagged parameters and scale (the scale table and check)."
    nb = nbformat.read(str(NB), as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    tagged = lambda tag: next(c.source for c in code if tag in c.metadata.get('tags', []))
    return code[0].source, tagged('parameters'), tagged('scale')

BAD = [(dict(repeats=0), "repeats=0 is not allowed"),
       (dict(warmup=-1), "warmup=-1 is not allowed"),
       (dict(preset='huge'), "preset='huge' is not allowed"),
       (dict(threads=0), "threads=0 is not allowed"),
       (dict(many_k=1), "many_k=1 is not allowed"),
       (dict(workers=0), "workers=0 is not allowed"),
       (dict(mem_k=1), "mem_k=1 is not allowed"),
       (dict(loc_budget=0), "loc_budget=0 is not allowed"),
       (dict(loc_budget=1.5), "loc_budget=1.5 is not allowed"),
       (dict(unlearners=['retrain']), "unlearners[0]='retrain' is not allowed"),  # retraining is the reference, not a method
       (dict(unlearners=['fine_tune']), "unlearners[0]='fine_tune' is not allowed"),
       (dict(unlearners=[]), "at least 1 item"),
       (dict(mlp_hidden=[128, 0]), "mlp_hidden[1]=0 is not allowed"),
       (dict(implicit_sigma=0.0), "implicit_sigma=0.0 is not allowed"),
       (dict(alpha=1), "alpha=1 is not allowed"),
       (dict(retrain_epochs=2.5), "retrain_epochs=2.5 is not allowed"),
       (dict(passed=['no_such']), "not parameters of this notebook")]

@pytest.fixture(scope='module')
def first_cells():
    "The notebook's import cell run once; its parameter cell and check to run per case."
    imports, params, check = _cells()
    ns = {}; exec(imports, ns)
    return ns, params, check

@pytest.mark.parametrize('params, named', BAD, ids=[','.join(f'{k}={v!r}' for k, v in p.items()) for p, _ in BAD])
def test_bad_parameters_fail_in_the_check(first_cells, tmp_path, params, named):
    "Every bad value stops in the check cell, naming the parameter and the value, before any data is loaded or folder made."
    base, pcell, check = first_cells
    ns = dict(base); exec(pcell, ns)
    ns.update(params, out_dir=str(tmp_path/'f'), passed=params.get('passed', sorted(params)))
    from unlearnrepro.core import UnlearnReproError
    with pytest.raises(UnlearnReproError) as e: exec(check, ns)
    assert named in str(e.value), str(e.value)
    assert not (tmp_path/'f').exists()

def test_scale_rows_are_parameters_and_pass_the_check(first_cells, tmp_path):
    "Every preset's scale row names parameters only, and resolves to values the check accepts (without running anything)."
    base, pcell, check = first_cells
    for preset in ('tiny', 'cpu', 'paper'):
        ns = dict(base); exec(pcell, ns)
        ns.update(preset=preset, out_dir=str(tmp_path/'f'/preset), passed=[])
        src = check.split('THREADS = set_threads')[0]  # the scale table and the checks only
        exec(src, ns)
        assert ns['P']['preset'] == preset
    assert ns['repeats'] >= 5 and ns['many_k'] == 32  # the targets' own sizes at the larger presets

CPU = ROOT/'figures'/'cpu'/'benchmarks'

@pytest.mark.skipif(not (CPU/'benchmarks.csv').exists(), reason='no committed cpu benchmark results yet')
def test_committed_cpu_results_are_complete():
    "The committed cpu run: every row with finite numbers, a verdict on every target, the machine named, the README beside it."
    res = pd.read_csv(CPU/'benchmarks.csv', keep_default_na=False)
    n_unlearn = res.row.str.startswith('unlearning: ').sum()
    assert n_unlearn >= 1 and len(res) == ROWS + n_unlearn, res.row.tolist()
    for c in ('ours', 'theirs', 'ratio', 'ratio_min', 'ratio_max'):
        assert all(math.isfinite(float(v)) for v in res[c]), c
    assert set(res.met) <= {'yes', 'no', 'report'} and ((res.target == '') == (res.met == 'report')).all()
    assert (res.rounds >= 5).all()
    m = pd.read_csv(CPU/'machine.csv')
    assert m.preset.iloc[0] == 'cpu' and m.cores.iloc[0] >= 1 and m.torch_threads.iloc[0] >= 1 and m.matmul_gflops.iloc[0] > 0
    for f in ('benchmarks.md', 'benchmarks.png', 'timings.csv', 'missed_targets.md', 'README.md'):
        assert (CPU/f).exists() and (CPU/f).stat().st_size > 0, f

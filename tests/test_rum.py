"RUM / memorization proxies notebook (13_rum) beyond its own cells: bad parameters fail in the first cell before anything is trained or written, valid subsets run to the end, and the committed cpu results are complete."
import os, subprocess, sys, json
from pathlib import Path
import pandas as pd, yaml
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _run(tmp_path, params:dict, env=None):
    "Run the notebook at tiny with `params` through `unlearnrepro reproduce`. Returns (ok, its output)."
    env = {**os.environ, **(env or {})}
    exe = Path(sys.executable).parent/'unlearnrepro'
    args = [str(exe), 'reproduce', '--only', 'rum', '--out', str(tmp_path/'f'), '--runs', str(tmp_path/'r')]
    for k, v in params.items(): args += ['-p', f'{k}={v!r}']
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    return r.returncode == 0, r.stdout + r.stderr

BAD = [(dict(pairs=['digits_mlp', 'digits_vit']), "pairs[1]='digits_vit' is not allowed: choose one of"),
       (dict(n_per=500), "leave no retain set")]  # 3 x 500 of digits' 1,237 training examples; every other check: tests/test_params.py

@pytest.mark.parametrize('params, named', BAD, ids=[','.join(f'{k}={v!r}' for k, v in p.items()) for p, _ in BAD])
def test_bad_parameters_fail_before_any_work(tmp_path, tmp_cache, params, named):
    ok, out = _run(tmp_path, params)
    assert not ok and named in out, out[-3000:]
    assert not any(tmp_cache.rglob('*.pt')) and not (tmp_path/'f'/'tiny'/'rum').exists()  # nothing trained, nothing written

def test_valid_subsets_run_to_the_end(tmp_path):
    "Another unlearner, memorization and one proxy, the strict retain mode only, no sequential experiment, values from a YAML: runs to the end."
    hp = tmp_path/'hp.yaml'
    params = dict(unlearners=['random_label'], refine_by=['memorization', 'holdout_retraining'], proxies=['confidence'], retain_modes=['strict'],
                  seq_pairs=[], hparams_file=str(hp))
    ok, out = _run(tmp_path, dict(params, save_hparams=True))  # saved there, then
    assert ok, out[-3000:]
    d = tmp_path/'f'/'tiny'/'rum'
    claims = pd.read_csv(d/'claims.csv', keep_default_na=False)
    assert set(claims.verdict) <= {'holds', 'fails', 'inconclusive'}
    assert not claims.claim.str.contains('progressive').any() and claims.claim.str.contains(r'\[strict\]').any()  # one retain mode: its claims only
    runs = pd.read_csv(d/'all_runs.csv')
    assert set(runs.unlearner) == {'random_label', 'original'} and not (d/'fig3_sequential.png').exists()
    assert set(runs.retain_mode) == {'strict', 'none'} and (d/'fig2_tow_strict.png').exists() and not (d/'fig2_tow_progressive.png').exists()
    steps = {f'digits_mlp/random_label/{v}_strict/step{k}' for v in ('rum', 'shuffle') for k in (1, 2, 3)}
    assert set(yaml.safe_load(hp.read_text())) == {'digits_mlp/random_label'} | steps  # seq_pairs=[]: NegGrad+ is not needed, not tuned
    ok, out = _run(tmp_path, dict(params, tune=False))  # reads the values back
    assert ok, out[-3000:]

def test_committed_cpu_results_are_complete():
    d = ROOT/'figures'/'cpu'/'rum'
    files = ['original_models.csv', 'proxy_correlation.csv', 'proxy_distributions.png', 'proxy_cost.csv', 'forget_sets.csv', 'fig2_tow_progressive.png',
             'fig2_tow_strict.png', 'fig2_tow.csv', 'fig2_memorization_strata.csv', 'no_op.csv', 'rum_steps.csv', 'rum_steps.png', 'strata_hardness.csv',
             'fig3_sequential.png', 'fig3_sequential.csv', 'fig7_holdout_shift.png', 'claims.csv', 'claims.md', 'all_runs.csv', 'tuning_trials.csv', 'README.md']
    missing = [f for f in files if not (d/f).exists() or (d/f).stat().st_size == 0]
    assert not missing, missing
    orig = pd.read_csv(d/'original_models.csv')
    assert len(orig.pair.unique()) >= 2 and (orig.train_acc >= 0.99).all()  # every original interpolates
    runs = pd.read_csv(d/'all_runs.csv')
    assert sorted(runs.seed.unique()) == [0, 1, 2, 3, 4]
    assert {'finetune', 'neggrad_plus', 'l1_sparse', 'random_label', 'salun', 'scrub'} <= set(runs.unlearner)
    assert set(runs.variant) >= {'RUM^F', 'vanilla', 'shuffle', 'original'} and runs[runs.group == 'sequential'].step.max() == 5
    rum = runs[runs.variant.isin(['RUM^F', 'shuffle'])]
    assert set(rum.retain_mode) == {'progressive', 'strict'} and set(runs[runs.group == 'stratum'].setting) >= {'fixed', 'tuned'}  # both modes, both budgets
    ok_ = runs[runs.nonfinite != 1]
    assert ok_[['tow', 'tow_mia']].apply(lambda c: c.between(0, 1)).all().all()  # in [0, 1] wherever defined (NaN only for non-finite outputs)
    assert (ROOT/'nbs'/'hparams'/'rum_cpu.yaml').stat().st_size > 0
    claims = pd.read_csv(d/'claims.csv', keep_default_na=False)
    assert (claims.test != 'point estimate (no paired test yet)').all() and (d/'13_rum.ipynb').exists()  # paired verdicts; the executed notebook beside them

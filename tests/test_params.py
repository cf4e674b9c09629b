"Bad notebook parameters fail in the notebook's own check cell, before any data is trained on or any folder written (in-process: the CLI path is in test_reproduce.py)."
from pathlib import Path
import nbformat, pytest
from unlearnrepro.core import UnlearnReproError

ROOT = Path(__file__).resolve().parents[1]

def _tagged(nb, tag):
    "The source of the one code cell tagged `tag`."
    cells = [c for c in nb.cells if c.cell_type == 'code' and tag in c.metadata.get('tags', [])]
    assert len(cells) == 1, f"{len(cells)} cells tagged {tag!r}"
    return cells[0].source

def _cells(name):
    "The import cell, the parameters cell, the scale-and-check cell and the data cell (with the checks that need data) of an experiment notebook."
    nb = nbformat.read(str(ROOT/'nbs'/name), as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    return code[0].source, _tagged(nb, 'parameters'), _tagged(nb, 'scale'), _tagged(nb, 'data')

@pytest.fixture(scope='module')
def notebooks():
    out = {}
    for name in ('11_del.ipynb', '12_privacy.ipynb', '13_rum.ipynb'):
        imports, params, scale, data = _cells(name)
        ns = {}; exec(imports, ns); out[name] = (ns, params, scale, data)
    return out

BAD = [('11_del.ipynb', dict(max_epochs=0), 'max_epochs=0'), ('11_del.ipynb', dict(budgets=[0.1, 1.5]), 'budgets[1]=1.5'),
       ('11_del.ipynb', dict(forget_kinds=['iid', 'odd']), "'odd'"), ('11_del.ipynb', dict(budgets=[]), 'at least 1 item'),
       ('11_del.ipynb', dict(n_trials=0), 'n_trials=0'), ('11_del.ipynb', dict(tune='False'), "tune='False' is not allowed: use True or False"),
       ('11_del.ipynb', dict(seeds=[0, 0]), '0 appears twice'), ('11_del.ipynb', dict(localizers=['del', 'dell']), 'choose one of'),
       ('11_del.ipynb', dict(seeds=[1.5]), 'seeds[0]=1.5'), ('11_del.ipynb', dict(seeds=[100]), 'tune_seed=100 is also in seeds'),
       ('11_del.ipynb', dict(h_frac=0), 'h_frac=0'), ('11_del.ipynb', dict(workers=0), 'workers=0'),
       ('11_del.ipynb', dict(passed=['seed']), 'not parameters of this notebook'),
       ('12_privacy.ipynb', dict(m=1), 'm=1'), ('12_privacy.ipynb', dict(sigmas=[-0.1]), 'sigmas[0]=-0.1'),
       ('12_privacy.ipynb', dict(rules=['auc']), "rules[0]='auc'"), ('12_privacy.ipynb', dict(score_method='exact'), "score_method='exact'"),
       ('12_privacy.ipynb', dict(m=100000), 'm=100000 asks for 5 forget sets'), ('12_privacy.ipynb', dict(seeds=[100]), 'tune_seed=100 is also in seeds'),
       ('12_privacy.ipynb', dict(train_lr=0), 'train_lr=0'), ('12_privacy.ipynb', dict(train_schedule='linear'), "train_schedule='linear'"),
       ('12_privacy.ipynb', dict(alpha=1), 'alpha=1'), ('12_privacy.ipynb', dict(label_noise=0.9), 'label_noise=0.9'),
       ('12_privacy.ipynb', dict(metrics=['speed']), "metrics[0]='speed'"), ('12_privacy.ipynb', dict(oracle_seeds=[]), 'at least 1 item'),
       ('13_rum.ipynb', dict(refine_by=['memorization', 'memorisation']), "refine_by[1]='memorisation' is not allowed"),
       ('13_rum.ipynb', dict(proxies=['memorization']), "proxies[0]='memorization' is not allowed"),  # memorization is the reference, not a proxy
       ('13_rum.ipynb', dict(unlearners=['fine_tune']), "unlearners[0]='fine_tune' is not allowed"),
       ('13_rum.ipynb', dict(unlearners=['rum']), "unlearners[0]='rum' is not allowed"),  # RUM is the meta-algorithm around them
       ('13_rum.ipynb', dict(seq_unlearner='neggrad_pluss'), "seq_unlearner='neggrad_pluss' is not allowed"),
       ('13_rum.ipynb', dict(seq_pairs=['fmnist_mlp']), "seq_pairs[0]='fmnist_mlp' is not allowed: choose one of: digits_mlp"),  # not among pairs
       ('13_rum.ipynb', dict(retain_modes=['lazy']), "choose one of: progressive, strict"),
       ('13_rum.ipynb', dict(refine_by=['confidence']), "it must include 'memorization'"), ('13_rum.ipynb', dict(n_per=0), "n_per=0 is not allowed"),
       ('13_rum.ipynb', dict(n_per=None, stratum_frac=1e-4), "at least 1 per stratum"),
       ('13_rum.ipynb', dict(seq_steps=25), "25 sequential steps"),  # 25 x 3 x 20 > 1,237
       ('13_rum.ipynb', dict(mem_k=1), "mem_k=1 is not allowed"), ('13_rum.ipynb', dict(seeds=[0, 100]), "tune_seed=100 is also in seeds"),
       ('13_rum.ipynb', dict(tune='False'), "use True or False")]

@pytest.mark.parametrize('name, params, named', BAD, ids=[f"{n[:6]}:{','.join(f'{k}={v!r}' for k, v in p.items())}" for n, p, _ in BAD])
def test_bad_parameters_fail_in_the_check(notebooks, tmp_path, name, params, named):
    base, pcell, scale, data = notebooks[name]
    ns = dict(base); exec(pcell, ns)
    ns.update(params, out_dir=str(tmp_path/'f'), cache_dir=str(tmp_path/'c'), passed=params.get('passed', sorted(params)))
    with pytest.raises(UnlearnReproError) as e: exec(scale, ns); exec(data, ns)
    assert named in str(e.value), str(e.value)
    assert not (tmp_path/'f').exists() and not (tmp_path/'c').exists()  # nothing written

@pytest.mark.parametrize('name', ['11_del.ipynb', '12_privacy.ipynb', '13_rum.ipynb'])
def test_scale_rows_pass_the_check(notebooks, tmp_path, name):
    "Every preset's row of the scale table names parameters only and resolves to values the check accepts."
    base, pcell, scale, _ = notebooks[name]
    for preset in ('tiny', 'cpu', 'paper'):
        ns = dict(base); exec(pcell, ns); ns.update(preset=preset, passed=[])
        exec(scale, ns)  # the scale table and the checks, before any data
        assert ns['P']['preset'] == preset

@pytest.mark.parametrize('name', ['10_quickstart.ipynb', '11_del.ipynb', '12_privacy.ipynb', '13_rum.ipynb', '90_benchmarks.ipynb'])
def test_papermill_reads_every_parameter(name):
    "papermill's own parser sees every assignment of the parameters cell (a comment it cannot parse hides that parameter)."
    from papermill.translators import PythonTranslator
    nb = nbformat.read(str(ROOT/'nbs'/name), as_version=4)
    cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
    assigned = {l.split('=')[0].strip() for l in cell.source.splitlines() if '=' in l and not l.lstrip().startswith('#')}
    assert assigned == {p.name for p in PythonTranslator.inspect(cell)}

"""The GPU check: the library's tests on CUDA, then the GPU benchmark rows, in one run of at most 8 minutes.

    python scripts/gpu_check.py [--out figures/gpu/benchmarks] [--skip-tests] [--skip-benchmarks] [--skip-plan] [--quick]

Writes to `--out`: `tests.csv` (every test of chapters 00-09 and its outcome on CUDA), `benchmarks.csv` / `.md` (each
row: two ways of doing the same work timed in this process, interleaved, their median paired ratio and its target),
`plan_paper.txt` (`unlearnrepro reproduce --preset paper --plan` priced on this GPU) and `machine.csv` (GPU, driver,
torch). Data are synthetic CIFAR-shaped tensors (nothing is downloaded); the model is
the `paper` preset's ResNet-18 (CIFAR stem) with the paper recipe's batch size, and for the ensemble rows MLPs and
half-width ResNet-8s (BatchNorm). Needs a CUDA GPU (GPU_CHECK_SMOKE=1 runs a tiny version on the CPU).
"""
import os, sys, time, json, copy, argparse, platform, subprocess, statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB_TESTS = ['tests/test_core.py', 'tests/test_data.py', 'tests/test_models.py', 'tests/test_privacy.py', 'tests/test_memorization.py',
             'tests/test_localization.py', 'tests/test_unlearning.py', 'tests/test_metrics.py', 'tests/test_experiment.py',
             'tests/test_params.py', 'tests/test_inputs.py', 'tests/test_grad_norms.py']


def run_tests(out:Path, workers:int=8) -> dict:
    "The library chapters' test files and notebooks (00-09) on CUDA; every test's outcome to tests.csv."
    nbs = sorted(p.stem for p in (ROOT/'nbs').glob('0[0-9]*_*.ipynb'))
    ids = LIB_TESTS + [f'tests/test_notebooks.py::test_notebook[{n}]' for n in nbs]
    env = dict(os.environ, UNLEARNREPRO_DEVICE='cuda', UNLEARNREPRO_QUIET='1', MPLBACKEND='Agg', UNLEARNREPRO_CACHE='/tmp/gpu_check_cache')
    xml = out/'junit.xml'
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-o', 'addopts=', '-n', str(workers), '-rf',
                        f'--junitxml={xml}', *ids], cwd=ROOT, env=env, capture_output=True, text=True)
    print(r.stdout[-6000:], r.stderr[-2000:], sep='\n')
    import xml.etree.ElementTree as ET
    rows = []
    for tc in ET.parse(xml).getroot().iter('testcase'):
        bad = tc.find('failure') if tc.find('failure') is not None else tc.find('error')
        outcome = 'skipped' if tc.find('skipped') is not None else ('failed' if bad is not None else 'passed')
        rows.append(dict(test=f"{tc.get('classname')}::{tc.get('name')}", outcome=outcome, seconds=float(tc.get('time', 0)),
                         message=(bad.get('message') or '')[:300].replace('\n', ' ') if bad is not None else ''))
    xml.unlink()
    import pandas as pd
    df = pd.DataFrame(rows); df.to_csv(out/'tests.csv', index=False)
    return dict(passed=int((df.outcome == 'passed').sum()), failed=int((df.outcome == 'failed').sum()),
                skipped=int((df.outcome == 'skipped').sum()), seconds=round(time.perf_counter() - t0, 1))


def benchmarks(out:Path, quick:bool=False):
    import numpy as np, pandas as pd, torch, torch.nn.functional as F
    from unlearnrepro.core import get_device, set_deterministic, make_generator
    from unlearnrepro.data import TensorData
    from unlearnrepro.models import create_model, train, Recipe, lr_at, per_example_grad_norms, fit_many
    from unlearnrepro.data import DataBundle
    dev = get_device(); smoke = os.environ.get('GPU_CHECK_SMOKE') == '1'  # a tiny run of this code on a CPU, before spending GPU time
    assert dev.type == 'cuda' or smoke, 'the GPU check needs a CUDA GPU'
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    rounds = 2 if quick else 3
    rows = []

    def timed(f):
        sync(); t = time.perf_counter(); f(); sync(); return time.perf_counter() - t

    def compare(row, compared_with, ours, theirs, target=None, ratio_is='speedup', note=''):
        "Both sides once to warm up, then `rounds` interleaved rounds; the median paired ratio (theirs / ours: a speedup of ours)."
        ours(); theirs()
        a, b = [], []
        for i in range(rounds):
            for name in (('ours', 'theirs') if i % 2 == 0 else ('theirs', 'ours')):
                (a if name == 'ours' else b).append(timed(ours if name == 'ours' else theirs))
        r = [y / x for x, y in zip(a, b)] if ratio_is == 'speedup' else [x / y for x, y in zip(a, b)]
        med = statistics.median(r)
        met = 'report' if target is None else ('yes' if (med >= target if ratio_is == 'speedup' else med <= target) else 'no')
        rows.append(dict(row=row, compared_with=compared_with, ours_s=statistics.median(a), theirs_s=statistics.median(b), ratio=med,
                         ratio_min=min(r), ratio_max=max(r), ratio_is=ratio_is, rounds=rounds,
                         target=None if target is None else (f"≥ {target}" if ratio_is == 'speedup' else f"≤ {target}"), met=met, note=note))
        print(rows[-1], flush=True)

    # ResNet-18 (CIFAR stem), the paper recipe's batch size, synthetic CIFAR-shaped data
    n = 256 if smoke else 5_000 if quick else 10_000
    g = make_generator(0)
    X, Y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    data = TensorData(X, Y)
    rc = Recipe(epochs=1, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, schedule='cosine', final_lr_frac=0.01)
    init = create_model('resnet18', 3, 10, 32, seed=0)

    def ours(): train(copy.deepcopy(init), data, rc, seed=0)
    Xd, Yd = X.to(dev), Y.to(dev)
    def bare():
        m = copy.deepcopy(init).to(dev).train()
        opt = torch.optim.SGD(m.parameters(), lr=rc.lr, momentum=rc.momentum, weight_decay=rc.weight_decay)
        gg = make_generator(0)
        for e in range(rc.epochs):
            for grp in opt.param_groups: grp['lr'] = lr_at(rc, e)
            for b in torch.randperm(n, generator=gg).split(rc.batch_size):
                b = b.to(dev); loss = F.cross_entropy(m(Xd[b]), Yd[b])
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    set_deterministic(True)
    compare('train(), ResNet-18 batch 128 (deterministic mode)', 'a plain loop, data already on the GPU (deterministic mode)', ours, bare,
            target=1.05, ratio_is='cost', note=f'{n} synthetic 3x32x32 images, one epoch; train() moves them to the GPU once per call and reads the loss once per epoch')
    # the deterministic mode's price: the plain loop with and without it
    def bare_fast(): set_deterministic(False); bare(); set_deterministic(True)
    compare('plain loop, deterministic mode on', 'the same loop with it off (cuDNN autotuning, atomics)', bare, bare_fast, ratio_is='cost',
            note='the price of bitwise-repeatable seeded runs on CUDA')
    # the same seed twice: bitwise the same weights?
    def weights():
        m, _ = train(copy.deepcopy(init), data.subset(range(min(n, 1024))), rc, seed=0)
        return torch.cat([v.detach().float().flatten().cpu() for v in m.state_dict().values()])
    same = torch.equal(weights(), weights())
    rows.append(dict(row='seeded rerun bitwise identical on CUDA (deterministic mode)', compared_with='', ratio=float(same), ratio_is='yes = 1',
                     rounds=1, target='= 1', met='yes' if same else 'no', note='train() twice, ResNet-18, 1,024 images, state dicts compared with torch.equal'))
    # per-example gradient norms against one batched forward + backward per example
    m = copy.deepcopy(init).to(dev).eval()
    k = 128 if smoke else 256 if quick else 512
    sub = data.subset(range(k))
    def norms(): per_example_grad_norms(m, sub)
    xb, yb = Xd[:rc.batch_size], Yd[:rc.batch_size]
    def batch_fb():
        for _ in range(k // rc.batch_size):
            m.zero_grad(set_to_none=True); F.cross_entropy(m(xb), yb).backward()
    compare('per_example_grad_norms, ResNet-18 (ghost norms, the default)', f'one batched forward + backward over the same {k} examples', norms, batch_fb,
            target=3, ratio_is='cost', note='target from the GPU issue: at most 3x the per-example cost of batched training')
    def norms_vmap(): per_example_grad_norms(m, sub, method='vmap')
    compare('per_example_grad_norms, ResNet-18, ghost norms', 'the vmap path (default chunk bound)', norms, norms_vmap,
            note='both paths of the library on the same examples')
    # fit_many: K MLPs as one vmap ensemble against one after another
    K = 4 if smoke else 16 if quick else 64
    xs = torch.randn(2000, 1, 8, 8, generator=g); ys = torch.randint(0, 10, (2000,), generator=g)
    bundle = DataBundle('synthetic', TensorData(xs, ys), TensorData(xs[:500], ys[:500]), 10, 1, 8, dict(name='synthetic'))
    mrc = Recipe(epochs=5, lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=128, schedule='constant')
    runs = [dict(seed=i, positions=np.sort(np.random.default_rng(i).choice(2000, 1400, replace=False))) for i in range(K)]
    mlp = {'name': 'mlp', 'hidden': [256, 256]}
    compare(f'fit_many vmap ensemble, K = {K} MLPs', f'{K} MLPs one after another (serial)',
            lambda: fit_many(bundle, mlp, mrc, runs, backend='vmap', members=K), lambda: fit_many(bundle, mlp, mrc, runs, backend='serial'),
            target=10, ratio_is='speedup', note='2,000 synthetic 8x8 images, 70 % subsets, 5 epochs')
    # fit_many: K half-width ResNet-8s (BatchNorm in every block) as one vmap ensemble against one after another. On the CPU
    # (the smoke run) fit_many trains BatchNorm models one by one, so there both sides call the engines directly.
    Kb = 4 if smoke else 32 if quick else 64
    nb = 256 if smoke else 2000
    yb = torch.randint(0, 10, (nb,), generator=g)
    xb = torch.randn(nb, 3, 32, 32, generator=g) + torch.randn(10, 3, 32, 32, generator=g)[yb]  # learnable: class means
    bn_bundle = DataBundle('synthetic_bn', TensorData(xb, yb), TensorData(xb[:500], yb[:500]), 10, 3, 32, dict(name='synthetic_bn', n=nb))
    # (smoke: batch 16, so that 2 epochs are enough steps for the running statistics; fewer leave the eval-mode model collapsed)
    brc = Recipe(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=16 if smoke else 128, schedule='cosine')
    bruns = [dict(seed=i, positions=np.sort(np.random.default_rng(i).choice(nb, int(0.7 * nb), replace=False))) for i in range(Kb)]
    res8 = {'name': 'resnet_cifar', 'depth': 8, 'width': 0.5}
    if dev.type == 'cuda':
        ens_bn = lambda: fit_many(bn_bundle, res8, brc, bruns, backend='vmap', members=Kb)
        ser_bn = lambda: fit_many(bn_bundle, res8, brc, bruns, backend='serial')
    else:
        from unlearnrepro.models import _train_chunk
        ens_bn = lambda: _train_chunk(bn_bundle, res8, brc, bruns, 'ensemble')
        ser_bn = lambda: [_train_chunk(bn_bundle, res8, brc, [r], 'single') for r in bruns]
    compare(f'fit_many vmap ensemble, K = {Kb} ResNet-8 (half width, BatchNorm)', f'{Kb} ResNet-8 one after another (serial)', ens_bn, ser_bn,
            target=10, ratio_is='speedup', note=f'{nb:,} synthetic 3x32x32 images, 70 % subsets, 2 epochs, batch {brc.batch_size}; each member its own BatchNorm statistics')
    res = pd.DataFrame(rows)
    res.to_csv(out/'benchmarks.csv', index=False)
    (out/'benchmarks.md').write_text(res.to_markdown(index=False, floatfmt='.4g') + '\n')
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'figures'/'gpu'/'benchmarks'))
    ap.add_argument('--skip-tests', action='store_true'); ap.add_argument('--skip-benchmarks', action='store_true'); ap.add_argument('--skip-plan', action='store_true'); ap.add_argument('--quick', action='store_true')
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    import torch
    if not torch.cuda.is_available() and os.environ.get('GPU_CHECK_SMOKE') != '1': sys.exit('no CUDA GPU: the GPU check does not run here')
    t0 = time.perf_counter()
    try: smi = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError: smi = 'nvidia-smi not found'
    tests = None if a.skip_tests else run_tests(out)
    print('tests:', tests, flush=True)
    os.environ.setdefault('UNLEARNREPRO_QUIET', '1')
    if not a.skip_benchmarks: benchmarks(out, a.quick)
    if not a.skip_plan:  # the paper preset's plan priced on this GPU (one measured batch per kind of work; nothing trained)
        preset = 'tiny' if os.environ.get('GPU_CHECK_SMOKE') == '1' else 'paper'  # the smoke run on a CPU: the small plan
        r = subprocess.run([sys.executable, '-c', 'import sys; from unlearnrepro.reproduce import main; sys.exit(main(sys.argv[1:]))',
                            'reproduce', '--preset', preset, '--plan'], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, UNLEARNREPRO_QUIET='1'))
        (out/f'plan_{preset}.txt').write_text(r.stdout + (f'\n(exit {r.returncode})\n' + r.stderr[-3000:] if r.returncode else ''))
        print(r.stdout[-2000:], flush=True)
    import pandas as pd
    pd.DataFrame([dict(gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (smoke run)', nvidia_smi=smi, torch=torch.__version__, cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version(), python=platform.python_version(), cpus=os.cpu_count(),
                       tests=json.dumps(tests), seconds=round(time.perf_counter() - t0, 1))]).to_csv(out/'machine.csv', index=False)
    print(f'done in {time.perf_counter() - t0:.0f} s')


if __name__ == '__main__': main()

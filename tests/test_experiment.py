"The experiment toolkit beyond its notebook: runs and tuning on Dask workers equal the in-process ones."
import numpy as np, pytest
from unlearnrepro.core import Cache, get_preset, set_threads, BadValueError
from unlearnrepro.experiment import scenario_spec, run_jobs, run_job, scenario_job, tune_job


@pytest.fixture(scope='module')
def client():
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={'UNLEARNREPRO_THREADS': '1', 'UNLEARNREPRO_QUIET': '1'}, silence_logs=40)
    c = Client(cluster)
    yield c
    c.close(); cluster.close()


def _cfg():
    cfg = get_preset('tiny'); cfg['train']['epochs'] = cfg['oracle']['epochs'] = 4
    return cfg


def test_grid_on_workers_equals_in_process(client, tmp_path):
    "Scenarios, unlearning runs and a tuning study on two one-thread workers give the numbers of this process."
    set_threads(1)
    cfg = _cfg()
    here, there = Cache(tmp_path/'here'), Cache(tmp_path/'there')
    specs = {name: [scenario_spec(cfg['data'], cfg, k, s, c) for k in ('iid', 'non_iid') for s in (0, 1)] for name, c in (('here', here), ('there', there))}
    a = run_jobs(scenario_job, [dict(spec=s) for s in specs['here']])
    b = run_jobs(scenario_job, [dict(spec=s) for s in specs['there']], client=client)
    assert a == b
    jobs = lambda key: [dict(spec=sp, unlearner=u, hp=dict(epochs=1), **loc) for sp in specs[key]
                        for u, loc in (('finetune', {}), ('rft', dict(localizer='del', budget=0.3)))]
    ra, rb = run_jobs(run_job, jobs('here')), run_jobs(run_job, jobs('there'), client=client)
    drop = lambda r: {k: v for k, v in r.items() if k != 'seconds'}
    assert [drop(x) for x in ra] == [drop(x) for x in rb]
    ta = run_jobs(tune_job, [dict(spec=specs['here'][0], unlearner='finetune', name='ft', storage=str(tmp_path/'here.db'), n_trials=2, max_epochs=2)])
    tb = run_jobs(tune_job, [dict(spec=specs['there'][0], unlearner='finetune', name='ft', storage=str(tmp_path/'there.db'), n_trials=2, max_epochs=2)], client=client)
    assert ta == tb


def test_failing_job_names_itself(client, tmp_path):
    spec = scenario_spec(_cfg()['data'], _cfg(), 'iid', 0, Cache(tmp_path))
    from unlearnrepro.models import RunFailedError
    with pytest.raises(RunFailedError, match=r"job 0 \(run_job .*'unlearner': 'nope'.*unknown unlearner 'nope'"):
        run_jobs(run_job, [dict(spec=spec, unlearner='nope')], client=client)

def _tune_at(args):
    "Wait for the common start time, then open (and maybe create) the shared study database."
    storage, t_start, i = args
    import time as _t
    from unlearnrepro.experiment import tune
    while _t.time() < t_start: _t.sleep(0.001)
    chosen, trials = tune(lambda hp: (hp['lr'] - 0.1) ** 2, {'lr': (1e-3, 1.0, True)}, f'race{i % 2}', storage, n_trials=1)
    return len(trials)

def test_tuning_processes_create_one_database_at_once(tmp_path):
    "Processes that open a new SQLite study database at the same moment all succeed (the schema is created once, under a lock)."
    import concurrent.futures as cf, multiprocessing as mp, time
    db = tmp_path/'studies.db'
    with cf.ProcessPoolExecutor(4, mp_context=mp.get_context('spawn')) as ex:
        ex.submit(int, 0).result()  # workers up before the clock starts
        t0 = time.time() + 3
        counts = list(ex.map(_tune_at, [(db, t0, i) for i in range(4)]))
    assert all(c >= 1 for c in counts)

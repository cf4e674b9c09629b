"The experiment toolkit beyond its notebook: runs and tuning on Dask workers equal the in-process ones."
import numpy as np, pytest
from unlearnrepro.core import Cache, get_preset, set_threads, BadValueError
from unlearnrepro.models import dask_client
from unlearnrepro.experiment import scenario_spec, run_jobs, run_job, scenario_job
from unlearnrepro.tuning import tune_job


@pytest.fixture(scope='module')
def client():
    c, close = dask_client(None, 2)  # 2 one-thread workers, as the notebooks start them
    yield c
    for x in close: x.close()


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

def test_study_database_is_created_under_a_lock(tmp_path):
    "Two processes creating one SQLite study database at once failed on alembic's UNIQUE constraint: creation holds an exclusive file lock."
    import threading, time
    from unlearnrepro.tuning import _file_lock, tune
    order, lock = [], tmp_path/'x.lock'
    def other():
        with _file_lock(lock): order.append('second')
    with _file_lock(lock):
        t = threading.Thread(target=other); t.start(); time.sleep(0.3); order.append('first')  # the other waits meanwhile
    t.join(10)
    assert order == ['first', 'second']
    tune(lambda hp: (hp['lr'] - 0.1) ** 2, {'lr': (1e-3, 1.0, True)}, 'locked', tmp_path/'studies.db', n_trials=1)
    assert (tmp_path/'studies.db.lock').exists()  # tune takes that lock around opening the database


def test_a_resumed_study_retries_a_crashed_trial_not_a_refused_one(tmp_path):
    "A trial whose job died (an exception) is tried again on resume, at the same point; a trial that returned NaN is not."
    from unlearnrepro.tuning import tune
    space, db, calls = {'lr': (0.01, 1.0, True)}, tmp_path/'s.db', []
    def crash_on_first(hp):
        calls.append(hp['lr'])
        if len(calls) == 1: raise RuntimeError('a bug in the first trial')
        return abs(hp['lr'] - 0.1)
    with pytest.raises(RuntimeError, match='a bug'): tune(crash_on_first, space, 's', db, 3, first=[{'lr': 0.5}])
    chosen, trials = tune(crash_on_first, space, 's', db, 3, first=[{'lr': 0.5}])  # the resumed run
    assert calls[:2] == [0.5, 0.5] and len(calls) == 4 and len(trials) == 3  # the paper's point again, then two more
    nan_calls = []
    def nan_first(hp):
        nan_calls.append(hp['lr']); return float('nan') if len(nan_calls) == 1 else abs(hp['lr'] - 0.1)
    tune(nan_first, space, 'n', db, 3, first=[{'lr': 0.5}])
    tune(nan_first, space, 'n', db, 3, first=[{'lr': 0.5}])  # nothing left to do: the NaN trial counts as tried
    assert nan_calls[0] == 0.5 and len(nan_calls) == 3

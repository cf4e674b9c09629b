"Every notebook in nbs/, executed exactly as `nbdev_test` does (nbdev.test.test_nb), one pytest item per notebook."
from pathlib import Path
import pytest
from nbdev.config import get_config
import nbdev.test as nbt  # not `from ... import test_nb`: pytest would collect it as a test

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    flags = get_config(path=ROOT).get('tst_flags', '').split()
    ok, secs = nbt.test_nb(nb, skip_flags=flags, do_print=False, showerr=True, basepath=ROOT)
    assert ok, f"{nb.name} failed (traceback above)"

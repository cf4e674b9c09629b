import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('UNLEARNREPRO_QUIET', '1')
from unlearnrepro.core import set_threads
set_threads()  # the pytest process and each xdist worker run torch on $UNLEARNREPRO_THREADS threads (1); importing the package does not set them

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "An empty artifact cache for this test only."
    d = tmp_path/'cache'
    monkeypatch.setenv('UNLEARNREPRO_CACHE', str(d))
    return d

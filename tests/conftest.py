import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('UNLEARNREPRO_QUIET', '1')

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    "An empty artifact cache for this test only."
    d = tmp_path/'cache'
    monkeypatch.setenv('UNLEARNREPRO_CACHE', str(d))
    return d

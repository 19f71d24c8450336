import pytest

from lab.backends import preflight
from lab.errors import LabError


def test_not_root_says_how_to_run(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match=r"needs root.*sudo .*invoke up exercise2.*sudo ./bootstrap up exercise2"):
        preflight.require_root("up exercise2")

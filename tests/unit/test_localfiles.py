"""A host's files read and fetched on this machine (netns, Docker): a person is root at the host's
shell, and in a container the folder is theirs, so nothing planted there may reach this machine's files."""
from __future__ import annotations

import os
import shutil

import pytest

from lab.backends.netns import NetnsBackend
from lab.errors import LabError
from lab.naming import state_dir


@pytest.fixture
def backend():
    b = NetnsBackend("unitfiles")
    yield b
    shutil.rmtree(state_dir("unitfiles"), ignore_errors=True)


def test_a_planted_link_is_neither_read_nor_fetched(backend, tmp_path):
    d = backend.work_dir("source")
    (d / "capture.pcap").write_bytes(b"pcap")
    (d / "x.pcap").symlink_to("/etc/passwd")
    (d / "work").mkdir()
    (d / "events").symlink_to("/etc")
    os.mkfifo(d / "fifo")
    assert backend.read_file("source", str(d / "capture.pcap"), 2) == b"ap"
    backend.fetch("source", str(d / "capture.pcap"), tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"pcap"
    for name in ("x.pcap", "events/passwd", "fifo"):
        with pytest.raises(LabError):
            backend.read_file("source", str(d / name))
        with pytest.raises(LabError):
            backend.fetch("source", str(d / name), tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()
    assert backend.read_file("source", str(d / "not-yet")) == b""

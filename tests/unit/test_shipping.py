"""A results folder carried in a lab's output (lab/swarm/shipping.py) and taken back by `invoke
receive`; and the Kubernetes Job printed for an exercise (lab/swarm/kubernetes.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from lab.errors import LabError
from lab.session import catalog  # noqa: F401  (the names exercises use)
from lab.swarm import kubernetes, shipping

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def folder_of(tmp_path):
    src = tmp_path / "src"
    (src / "events").mkdir(parents=True)
    (src / "manifest.json").write_text('{"lab": "x"}\n')
    (src / "events" / "client.jsonl").write_bytes(bytes(range(256)) * 40)
    return src


def test_a_folder_goes_through_lines_cut_anywhere_and_comes_back_the_same(tmp_path):
    src = folder_of(tmp_path)
    text = "progress one\n" + "".join(line + "\n" for line in shipping.pack(src)) + "after\n"
    chunks = [text[i:i + 7].encode() for i in range(0, len(text), 7)]  # a stream cut at odd places
    receiver = shipping.Receiver()
    shown = [s for s in (receiver.feed(line) for line in shipping.lines(chunks)) if s is not None]
    assert shown == ["progress one", "after"]
    receiver.unpack(tmp_path / "dst")
    assert (tmp_path / "dst" / "events" / "client.jsonl").read_bytes() == (src / "events" / "client.jsonl").read_bytes()
    assert (tmp_path / "dst" / "manifest.json").read_text() == '{"lab": "x"}\n'


def test_a_folder_cut_short_or_damaged_is_refused(tmp_path):
    lines = list(shipping.pack(folder_of(tmp_path)))
    short = shipping.Receiver()
    for line in lines[:-3]:
        short.feed(line)
    with pytest.raises(LabError, match="did not come back whole"):
        short.unpack(tmp_path / "a")
    damaged = shipping.Receiver()
    for line in lines[:2] + [lines[2][:-4] + "AAAA"] + lines[3:]:
        damaged.feed(line)
    with pytest.raises(LabError, match="came back damaged"):
        damaged.unpack(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_invoke_receive_takes_a_folder_from_standard_input(tmp_path):
    text = "".join(line + "\n" for line in ["0.10s a progress line", *shipping.pack(folder_of(tmp_path))])
    r = subprocess.run([sys.executable, "-m", "invoke", "receive", str(tmp_path / "got")], cwd=REPO, input=text.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["0.10s a progress line", f"results: {tmp_path / 'got'}"]
    assert (tmp_path / "got" / "manifest.json").exists()
    cut = subprocess.run([sys.executable, "-m", "invoke", "receive", str(tmp_path / "cut")], cwd=REPO, input=text[:-200].encode(),
                         capture_output=True, timeout=60)
    assert cut.returncode == 2 and b"did not come back whole" in cut.stderr and b"Traceback" not in cut.stderr
    assert not (tmp_path / "cut").exists()


def test_the_kubernetes_job_asks_for_the_capabilities_and_no_sysctl():
    job = yaml.safe_load(kubernetes.job("exercise2", ["keepidle=2"], "tcplab/tcplab:abc"))
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert container["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "SYS_ADMIN"]
    assert "privileged" not in container["securityContext"] and "sysctls" not in pod.get("securityContext", {})
    assert container["args"][:2] == ["up", "exercise2"] and "keepidle=2" in container["args"]
    with pytest.raises(LabError, match="keepidle"):
        kubernetes.job("exercise2", ["keepidle=-1"], "tcplab/tcplab:abc")


def _shipped(data: bytes) -> shipping.Receiver:
    """A Receiver fed `data` as a lab would ship it, with a correct header."""
    import base64
    import hashlib

    r = shipping.Receiver()
    r.feed(f"{shipping.BEGIN} {len(data)} {hashlib.sha256(data).hexdigest()}")
    text = base64.b64encode(data).decode()
    for i in range(0, len(text), shipping.LINE):
        r.feed(text[i:i + shipping.LINE])
    r.feed(shipping.END)
    return r


def _tar(add) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add(tar)
    return buf.getvalue()


def test_a_folder_that_reaches_out_of_itself_is_refused_and_nothing_lands_outside(tmp_path):
    import io
    import tarfile

    def escaping(tar):
        for name in ("../outside.txt", "/etc/tcplab-owned"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))

    def linking(tar):
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        inner = tarfile.TarInfo("passwd")  # written through the link, were it followed
        inner.size = 3
        tar.addfile(inner, io.BytesIO(b"bad"))

    for i, add in enumerate((escaping, linking)):
        with pytest.raises(LabError, match="could not be unpacked"):
            _shipped(_tar(add)).unpack(tmp_path / f"into{i}")
    assert not (tmp_path / "outside.txt").exists() and not __import__("os").path.exists("/etc/tcplab-owned")


def test_a_malformed_header_is_an_ordinary_line_and_bad_base64_one_line(tmp_path):
    r = shipping.Receiver()
    assert r.feed(f"{shipping.BEGIN} lots") == f"{shipping.BEGIN} lots"  # not a header: shown, never a traceback
    bad = _shipped(b"x" * 100)
    bad.body[0] = "!!!!" + bad.body[0][4:]
    with pytest.raises(LabError, match="not base64"):
        bad.unpack(tmp_path / "a")


def test_a_folder_over_the_limits_is_refused_before_it_is_written(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setattr(shipping, "MAX_UNPACKED", 1000)

    def big(tar):
        info = tarfile.TarInfo("big.pcap")
        info.size = 5000
        tar.addfile(info, io.BytesIO(b"\0" * 5000))

    with pytest.raises(LabError, match="would unpack to over"):
        _shipped(_tar(big)).unpack(tmp_path / "big")
    assert not (tmp_path / "big").exists()
    monkeypatch.setattr(shipping, "MAX_BYTES", 10)
    with pytest.raises(LabError, match="packed, over"):
        _shipped(b"y" * 100).unpack(tmp_path / "packed")

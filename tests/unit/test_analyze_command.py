"""`invoke analyze` as a person runs it: the reading printed, JSON, pictures, the annotated capture
Wireshark opens, and one line with exit status 2 for a file it cannot read."""
from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pcapbuild import lost_request
from tests.unit.test_findings import keepalive_abort

REPO = Path(__file__).resolve().parents[2]


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", "analyze", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def error_line(r: subprocess.CompletedProcess) -> str:
    text = (r.stdout + r.stderr).strip()
    assert "Traceback" not in text, text
    assert r.returncode == 2, text
    (line,) = [l for l in text.splitlines() if l.startswith("error:")]
    return line


def test_the_reading_json_pictures_and_the_annotated_capture(tmp_path):
    capture = keepalive_abort([2.004, 3.008, 4.012], 5.016).write(tmp_path / "k.pcap")
    r = analyze(str(capture), "--json", str(tmp_path / "k.json"), "--plots", str(tmp_path / "pics"),
                "--annotate", str(tmp_path / "k.pcapng"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "10.0.1.1:40000 -> 10.0.1.2:8990" in r.stdout
    assert "3 keepalive probes from the client, none answered" in r.stdout and "KEEPCNT 3" in r.stdout
    doc = json.loads((tmp_path / "k.json").read_text())
    (conn,) = doc["shown"]
    kinds = {f["kind"]: f for f in conn["findings"]}
    assert kinds["keepalive"]["settings"]["keepcnt"] == 3 and kinds["end"]["settings"]["how"] == "rst"
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["connection-0-sequence.png", "connection-0-window.png"]
    # Wireshark reads the annotated file, every packet there, the comments on the probes and the RST
    fields = subprocess.run(["tshark", "-r", str(tmp_path / "k.pcapng"), "-T", "fields", "-e", "frame.number", "-e", "frame.comment"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(fields) == 9
    comments = {int(line.split("\t")[0]): line.split("\t")[1] for line in fields if "\t" in line and line.split("\t")[1]}
    assert sorted(comments) == [6, 7, 8, 9]
    assert comments[6].startswith("tcplab: keepalive probe 1 of 3, 2.004 s after the last segment received; model 1.9")
    assert comments[7].startswith("tcplab: keepalive probe 2 of 3, 1.004 s after probe 1; model 0.99")
    assert "keepalive abort" in comments[9]


def test_a_gzipped_pcapng_and_one_connection_of_several(tmp_path):
    first = keepalive_abort([2.004, 3.008], 4.012).write(tmp_path / "a.pcap")
    subprocess.run(["tshark", "-r", str(first), "-F", "pcapng", "-w", str(tmp_path / "a.pcapng")], check=True, capture_output=True)
    (tmp_path / "a.pcapng.gz").write_bytes(gzip.compress((tmp_path / "a.pcapng").read_bytes()))
    r = analyze(str(tmp_path / "a.pcapng.gz"), "--flow", "10.0.1.2:8990-10.0.1.1:40000")
    assert r.returncode == 0 and "2 keepalive probes" in r.stdout
    r = analyze(str(tmp_path / "a.pcapng.gz"), "--flow", "10.0.1.2:8990-10.0.1.1:40001")
    assert "no TCP connection between those two ends" in error_line(r)


def test_a_quiet_connection_is_listed_only_with_all(tmp_path):
    c = lost_request([])  # a request and a reply, nothing more
    path = c.write(tmp_path / "q.pcap")
    r = analyze(str(path))
    assert r.returncode == 0 and "1 more connection" in r.stdout and "#0" not in r.stdout
    assert "#0  10.0.1.1:40000" in analyze(str(path), "--all").stdout


def pcap_header(link: int) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link)


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    (b"GIF89a, a picture and not a capture at all", "not a pcap or pcapng file"),
    (pcap_header(1)[:16], "the file is truncated"),
    (pcap_header(147) + struct.pack("<IIII", 1, 0, 4, 4) + b"abcd", "link type 147 is not one tcplab reads"),
    (b"\x1f\x8b" + b"\0" * 30, "the compressed stream is damaged"),
])
def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    assert words in error_line(analyze(str(path)))


def test_a_gzip_cut_midway_is_read_up_to_the_cut(tmp_path):
    """A capture compressed on the fly and copied before it was finished: the frames before the cut."""
    c = keepalive_abort([2.004, 3.008, 4.012], 5.016)
    whole = gzip.compress(c.write(tmp_path / "k.pcap").read_bytes())
    (tmp_path / "cut.pcap.gz").write_bytes(whole[: len(whole) * 3 // 4])
    r = analyze(str(tmp_path / "cut.pcap.gz"), "--annotate", str(tmp_path / "cut.pcapng"))
    assert r.returncode == 0, r.stdout + r.stderr
    said = " ".join(r.stdout.split())  # the terminal's width wraps warnings
    assert "the compressed stream ends before its end marker" in said and "Traceback" not in r.stdout + r.stderr
    assert (tmp_path / "cut.pcapng").stat().st_size > 100


def test_a_folder_is_not_a_capture(tmp_path):
    assert "a folder, not a capture file" in error_line(analyze(str(tmp_path)))


@pytest.mark.parametrize("args, words", [
    (["--flow", "10.0.1.1-10.0.1.2"], "write it ADDR:PORT-ADDR:PORT"),
    (["--kernel", "5.10"], "use one of host, 6.1, 6.12, 6.18"),
    (["--json", "/nonexistent/x.json"], "its folder does not exist"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, words):
    path = lost_request([]).write(tmp_path / "q.pcap")
    assert words in error_line(analyze(str(path), *args))

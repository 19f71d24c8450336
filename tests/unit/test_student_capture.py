"""The check of a person's own capture (hands-on mode), on captures built with scapy: what may be
missing from it (bulk data tcpdump could not keep up with) and what may not (the segments the
exercise is about, its start, its end)."""
import json

import pytest
from scapy.utils import wrpcap

from lab import checks
from tests.pcapbuild import Conversation, keepalive_results

EX1 = {"keepidle": 2, "keepintvl": 1, "keepcnt": 3, "user_timeout": 0}


def _lab_folder(tmp_path):
    """exercise1's folder with a burst of data before the idle period, and a person's copy of the capture."""
    folder = keepalive_results(tmp_path / "run", probes=[2.007, 3.032, 4.055], rst=5.08, params=EX1,
                               checks=("connection_established",))
    conv = Conversation()
    conv.handshake()
    for i in range(20):  # the burst: twenty data segments, each acknowledged
        conv.client_data(0.001 + i * 1e-4, b"x" * 100)
        conv.server_ack(0.00105 + i * 1e-4)
    conv.server_data(0.004, b"reply to hello")
    conv.client_ack(0.0041)
    for p in (2.007, 3.032, 4.055):
        conv.client_probe(0.004 + p)
    conv.client_rst(0.004 + 5.08)
    conv.write(folder / "source.pcap")
    (folder / "client.log").write_text((folder / "client.log").read_text().replace('"bytes": 5', '"bytes": 2000'))
    m = json.loads((folder / "manifest.json").read_text())
    m["checks"] = [{"check": "student_capture", "host": "source", "client": "client"}]
    m["student_captures"] = [{"host": "source", "file": "mine.pcap", "taken_as": "source.pcap"}]
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder, conv.packets


def _theirs(folder, packets, drop):
    wrpcap(str(folder / "mine.pcap"), [p for i, p in enumerate(packets) if i not in drop])
    (result,) = checks.run(folder)
    return result


@pytest.mark.parametrize("drop, passes, words", [
    (set(), True, "all 49 segments of the connection"),
    ({5, 6, 9, 12}, True, "4 data or ACK segments of 49 missing in between, which tcpdump dropped"),  # from the burst
    ({46}, False, "1 segment missing, of which 1 the exercise is about"),  # one of the (identical) probes
    ({0, 1, 2}, False, "3 segments missing, of which 2 the exercise is about"),  # started after the handshake
    ({47, 48}, False, "stops 2 segments short"),  # stopped before the last probe and the RST
    ({5, 48}, False, "2 segments missing, of which 1 the exercise is about"),  # a drop in the burst, and the RST missing
])
def test_a_capture_of_ones_own_may_lack_only_bulk_segments(tmp_path, drop, passes, words):
    folder, packets = _lab_folder(tmp_path)
    assert len(packets) == 49  # handshake 3, burst 40, reply and its ACK, 3 probes, the RST
    result = _theirs(folder, packets, drop)
    assert result.passed is passes and words in result.observed, result.observed

"""The analyzer on small captures built with scapy."""
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import CookedLinux
from scapy.utils import wrpcap

from lab.analysis import tcpflow as tf
from lab.errors import LabError
from tests.pcapbuild import CLIENT, SERVER, Conversation, events, lost_request, read_segments
from tests.wireshark import COMPARED, disagreements


def labels(flow):
    return [(e.sender, sorted(e.labels)) for e in events(flow)]


def test_handshake_data_keepalive_and_rst(tmp_path):
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"hello")
    c.server_data(0.02, b"reply")
    c.client_ack(0.03)
    c.client_probe(2.0)
    c.server_ack(2.001)  # a live peer answers the probe
    c.client_probe(4.0)
    c.client_rst(6.0)
    (flow,) = tf.analyze_file(c.write(tmp_path / "k.pcap"))
    assert flow.client == CLIENT and flow.server == SERVER
    assert labels(flow) == [
        ("client", ["syn"]),
        ("server", ["syn_ack"]),
        ("client", ["ack"]),
        ("client", ["data"]),
        ("server", ["data"]),
        ("client", ["ack"]),
        ("client", ["keepalive"]),
        ("server", ["keepalive_ack"]),
        ("client", ["keepalive"]),
        ("client", ["rst"]),
    ]
    rst = events(flow)[-1]
    assert rst.rel_seq == 1 + 5  # SND.NXT: SYN plus five bytes
    assert events(flow)[6].rel_seq == 5  # the probe sits at SND.UNA - 1


def test_window_scaling_zero_window_probe_update_and_retransmission(tmp_path):
    c = Conversation(wscale=7)
    c.handshake()
    c.client_data(0.01, b"x" * 100)
    c.server_ack(0.02, win=0)  # receiver full
    c.client_probe(0.3)  # Linux's zero-window probe: same form as a keepalive
    c.server_ack(0.301, win=0)
    c.server_ack(1.0, win=4)  # window update: same seq and ack, window opened
    c.client_data(1.01, b"y" * 10)
    c.packets.append(c.packets[-1].copy())  # the same data again
    c.packets[-1].time += 0.2
    flow = tf.analyze_file(c.write(tmp_path / "z.pcap"))[0]
    got = labels(flow)[3:]
    assert got == [
        ("client", ["data"]),
        ("server", ["ack", "zero_window"]),
        ("client", ["zero_window_probe"]),
        ("server", ["zero_window", "zero_window_probe_ack"]),
        ("server", ["window_update"]),
        ("client", ["data"]),
        ("client", ["data", "retransmission", "rto_retransmission"]),  # resent after a silence: the retransmission timer
    ]
    assert events(flow)[7].window == 4 << 7  # scaled
    assert events(flow)[1].window == 65160  # a SYN's window is never scaled


def test_one_byte_probe_is_a_probe_too(tmp_path):
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"abc")
    c.server_ack(0.02, win=0)
    c.client_probe(0.3, payload=b"c")  # the RFC/BSD form: one byte of old data
    flow = tf.analyze_file(c.write(tmp_path / "b.pcap"))[0]
    assert events(flow)[-1].has(tf.ZERO_WINDOW_PROBE)


def test_linux_cooked_capture_and_flow_without_syn(tmp_path):
    pkts = [
        CookedLinux(proto=0x0800) / IP(src="10.0.1.2", dst="10.0.1.1") / TCP(sport=8990, dport=4000, flags="A", seq=7, ack=9),
        CookedLinux(proto=0x0800) / IP(src="10.0.1.1", dst="10.0.1.2") / TCP(sport=4000, dport=8990, flags="PA", seq=9, ack=7) / b"hi",
    ]
    for i, p in enumerate(pkts):
        p.time = 10 + i
    wrpcap(str(tmp_path / "s.pcap"), pkts)
    segs = list(read_segments(tmp_path / "s.pcap"))
    assert [(s.src, s.plen, s.ts) for s in segs] == [("10.0.1.2", 0, 10.0), ("10.0.1.1", 2, 11.0)]
    (flow,) = tf.analyze_file(tmp_path / "s.pcap")
    assert flow.client == ("10.0.1.2", 8990)  # whoever spoke first


def test_truncated_capture_keeps_what_came_before(tmp_path):
    c = Conversation()
    c.handshake()
    path = c.write(tmp_path / "t.pcap")
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    assert [s.index for s in read_segments(path)] == [1, 2]


def test_syn_retransmission_is_labelled(tmp_path):
    c = Conversation()
    syn = c._add(0.0, True, "S", options=[("WScale", 7)])
    again = syn.copy()
    again.time = syn.time + 1.0
    c.packets.append(again)
    (flow,) = tf.analyze_file(c.write(tmp_path / "s.pcap"))
    assert [sorted(e.labels) for e in events(flow)] == [["syn"], ["retransmission", "syn", "syn_retransmission"]]


def _reordered(late: float, dupacks: int = 0, handshake: bool = True) -> Conversation:
    """Four segments, the second one overtaken by the third and fourth on the way; `late` seconds
    after the fourth it arrives, after `dupacks` duplicate ACKs asking for it."""
    c = Conversation()
    if handshake:
        c.handshake()  # first RTT: 0.2 ms
    s = c.cseq
    for i in (0, 2, 3):
        c.client_data(0.010 + i * 1e-5, bytes([97 + i]) * 100, seq=s + 100 * i)
    c.cseq = s + 400
    for k in range(dupacks + 1):
        c._add(0.01004 + k * 1e-5, False, "A").ack = s + 100
    c.client_data(0.01003 + (dupacks + 2) * 1e-5 + late, b"b" * 100, seq=s + 100)
    return c


RTO = ["retransmission", "rto_retransmission"]  # the first unacknowledged byte resent after a silence


@pytest.mark.parametrize("late, dupacks, handshake, label", [
    (0.0, 0, True, ["out_of_order"]),  # within the first RTT of the newest data
    (0.0, 1, True, ["out_of_order"]),  # one duplicate ACK does not make a fast retransmission
    (0.005, 0, True, RTO),  # well after the first RTT
    (0.0, 2, True, ["retransmission", "fast_retransmission"]),  # two duplicate ACKs asked for it
    (0.002, 0, False, ["out_of_order"]),  # no handshake seen: Wireshark's 3 ms
    (0.004, 0, False, RTO),
])
def test_a_segment_overtaken_on_the_way_is_out_of_order_not_a_retransmission(tmp_path, late, dupacks, handshake, label):
    path = _reordered(late, dupacks, handshake).write(tmp_path / "r.pcap")
    (flow,) = tf.analyze_file(path)
    last = events(flow)[-1]
    assert last.rel_seq == 101  # the second hundred bytes (without the SYN, numbers start at 1, as in Wireshark)
    assert sorted(last.labels) == sorted(label + ["data"])
    # Wireshark says the same of every frame
    assert disagreements(path) == {name: [] for name in COMPARED}


def test_scale_from_the_syn_ack_alone_when_the_syn_is_missing(tmp_path):
    c = Conversation(wscale=7)
    c.handshake()
    c.packets.pop(0)  # the capture starts at the SYN-ACK
    c.server_ack(0.1, win=16)
    (flow,) = tf.analyze_file(c.write(tmp_path / "w.pcap"))
    assert flow.client == CLIENT  # the SYN-ACK's receiver
    assert events(flow)[-1].window == 16 << 7


def test_a_reused_port_starts_a_new_connection(tmp_path):
    first = Conversation()
    first.handshake()
    first.client_data(0.01, b"one")
    second = Conversation(t0=first.t0 + 5)
    second.cseq = 900_000  # a new ISN on the same four-tuple
    second.handshake()
    second.client_data(0.01, b"two")
    first.packets += second.packets
    flows = tf.analyze_file(first.write(tmp_path / "r.pcap"))
    assert len(flows) == 2
    assert all(len(f.where(tf.RETRANSMISSION)) == 0 for f in flows)
    assert [len(f) for f in flows] == [4, 4]


def test_a_capture_whose_first_record_is_cut_short_has_no_segments(tmp_path):
    c = Conversation()
    c.handshake()
    path = c.write(tmp_path / "t.pcap")
    data = path.read_bytes()
    path.write_bytes(data[: 24 + 16 + 10])
    assert list(read_segments(path)) == []
    assert tf.analyze_file(path) == []


def pcapng(blocks: list[tuple[int, bytes]]) -> bytes:
    """A little-endian pcapng file of the given (block type, body) blocks after its section header."""
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    return shb + b"".join(block(k, b) for k, b in blocks)


def test_pcapng_with_two_link_types_and_nanoseconds_reads_as_the_pcap(tmp_path):
    """What Wireshark writes: an Ethernet and a raw-IP interface, the second in nanoseconds, packets from both."""
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"hello")
    pcap = tf.analyze_file(c.write(tmp_path / "c.pcap"))[0]
    eth = struct.pack("<HHI", 1, 0, 65535)
    raw = struct.pack("<HHI", 101, 0, 65535) + struct.pack("<HHB", 9, 1, 9) + b"\0" * 3 + struct.pack("<HH", 0, 0)
    blocks = [(1, eth), (1, raw)]
    for k, pkt in enumerate(c.packets):
        iface, data = (0, bytes(pkt)) if k % 2 == 0 else (1, bytes(pkt.payload))  # odd packets: IP only
        t = int(round(float(pkt.time) * (1e6 if iface == 0 else 1e9)))
        blocks.append((6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data))
    data = pcapng(blocks)
    (tmp_path / "c.pcapng").write_bytes(data + data[-40:-10])  # and a last block cut short, as a killed tshark leaves it
    (flow,) = tf.analyze_file(tmp_path / "c.pcapng")
    assert labels(flow) == labels(pcap)
    assert [round(e.ts, 6) for e in events(flow)] == [round(e.ts, 6) for e in events(pcap)]
    assert [s.index for s in read_segments(tmp_path / "c.pcapng")] == [1, 2, 3, 4]


def test_a_pcapng_packet_of_an_undescribed_interface_is_named(tmp_path):
    (tmp_path / "bad.pcapng").write_bytes(pcapng([(6, struct.pack("<IIIII", 3, 0, 0, 0, 0))]))
    with pytest.raises(LabError, match="names interface 3, which no interface block describes"):
        read_segments(tmp_path / "bad.pcapng")


# The timer labels: which timer sent a segment, read from the wire alone.


def timer_labels(flow, label):
    return [round(e.ts - flow.ts[0], 3) for e in flow.pick(label)]


def test_a_tail_loss_probe_then_doubling_rto_retransmissions(tmp_path):
    # Linux with one segment out: the probe after the PTO (about the RTO), then RTO, 2 RTO, 4 RTO.
    path = lost_request([0.208, 0.416, 0.832, 1.664]).write(tmp_path / "t.pcap")
    (flow,) = tf.analyze_file(path)
    assert len(flow.where(tf.TAIL_LOSS_PROBE)) == 1 and flow.first(tf.TAIL_LOSS_PROBE).ts - flow.ts[0] == pytest.approx(1.208, abs=1e-3)
    assert len(flow.where(tf.RTO_RETRANSMISSION)) == 3
    assert disagreements(path) == {name: [] for name in COMPARED}  # each is Wireshark's retransmission


def test_without_a_probe_the_first_resend_is_an_rto_retransmission(tmp_path):
    # Doubling from the first resend on: 0.2, then 0.4 later, then 0.8 later.
    (flow,) = tf.analyze_file(lost_request([0.204, 0.612, 1.428]).write(tmp_path / "r.pcap"))
    assert len(flow.where(tf.TAIL_LOSS_PROBE)) == 0 and len(flow.where(tf.RTO_RETRANSMISSION)) == 3


def test_a_resend_of_the_tail_when_more_was_in_flight_is_a_probe(tmp_path):
    # Two segments out: the PTO (2 x SRTT, a few ms) resends the second; the RTO would resend the first.
    (flow,) = tf.analyze_file(lost_request([0.010, 0.214], segments=2).write(tmp_path / "p.pcap"))
    probe = flow.first(tf.TAIL_LOSS_PROBE)
    assert probe is not None and probe.rel_seq == flow.first(tf.DATA, tf.CLIENT, after=flow.ts[0] + 0.9).rel_seq + 100
    assert len(flow.where(tf.RTO_RETRANSMISSION)) == 1


def test_delayed_ack_and_the_segment_nagle_held(tmp_path):
    c = Conversation()
    c.handshake()
    c.client_data(0.010, b"a" * 100)  # first write
    c.server_ack(0.050)  # the receiver's delayed ACK: 40 ms
    c.client_data(0.05002, b"b" * 100)  # second write, held by Nagle until that ACK
    c.server_data(0.0501, b"reply")  # the answer needs both
    c.client_ack(0.0502)
    c.client_data(0.100, b"c" * 100)  # the next request, both writes at once: nothing held
    c.client_data(0.10001, b"d" * 100)
    c.server_ack(0.1002)  # acknowledged at once
    (flow,) = tf.analyze_file(c.write(tmp_path / "n.pcap"))
    delayed = flow.pick(tf.DELAYED_ACK)
    held = flow.pick(tf.NAGLE_HELD)
    assert [round(e.ts - flow.ts[0], 4) for e in delayed] == [0.05]
    assert [(e.seg.plen, round(e.ts - flow.ts[0], 5)) for e in held] == [(100, 0.05002)]


def test_no_delayed_ack_label_on_an_ack_sent_at_once_or_after_the_receiver_spoke(tmp_path):
    c = Conversation()
    c.handshake()
    c.client_data(0.010, b"a" * 100)
    c.server_ack(0.0101)  # at once
    c.client_data(0.020, b"b" * 100)
    c.server_data(0.030, b"answer")  # the receiver spoke: the ACK rode on its data
    c.server_ack(0.090)  # a later bare ACK acknowledges nothing new of the client's since its own data
    (flow,) = tf.analyze_file(c.write(tmp_path / "a.pcap"))
    assert len(flow.where(tf.DELAYED_ACK)) == 0

"""The scanner on what captures from the real world carry and the lab's do not: link types, VLAN
tags, tunnels, IPv6 extension headers, short snaplens, sequence wrap, reused ports, captures that start
mid-connection, window scaling offered by one side only. Each capture is built with scapy, read by
tcplab and by tshark 4.0, and must agree frame by frame on every Wireshark flag."""
from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, fragment6
from scapy.layers.l2 import GRE, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.analysis import capture
from lab.analysis import tcpflow as tf
from lab.errors import LabError
from tests.pcapbuild import CLIENT, MACS, SERVER, Conversation
from tests.wireshark import compare


def eventful(isn: int = 1000, wscale: int = 7) -> Conversation:
    """A connection with most of what the analysis flags: data, a segment the capture missed, duplicate
    ACKs and the fast retransmission they ask for, a zero window, both kinds of zero-window probe, a
    window update, a keep-alive and its answer, a spurious retransmission, a RST."""
    c = Conversation(wscale=wscale)
    c.cseq = isn
    c.handshake()
    c.client_data(0.010, b"a" * 100)
    c.server_ack(0.011)
    lost = c.cseq
    c.cseq += 100  # the next 100 bytes never reach the capture
    c.client_data(0.012, b"c" * 100)
    for k in range(3):
        c._add(0.013 + k * 1e-4, False, "A", seq=None)  # duplicate ACKs of `lost`, each the same
    c.packets[-3:] = [p for p in c.packets[-3:]]
    for p in c.packets[-3:]:
        p[TCP].ack = lost
    c.client_data(0.0135, b"b" * 100, seq=lost)  # fast retransmission
    c.server_ack(0.020)
    c.server_ack(0.030, win=0)  # zero window
    c.client_rfc_probe(0.240)  # the RFC 1122 probe: one new byte into the closed window
    c.server_ack(0.2405, win=0)  # its answer: still closed
    c.client_probe(0.250)  # Linux's zero-window probe (Wireshark: keep-alive)
    c.server_ack(0.251, win=0)
    c.server_ack(0.400)  # window update
    c.client_data(0.500, b"d" * 50)
    c.server_ack(0.501)
    c.client_data(0.600, b"d" * 50, seq=c.cseq - 50)  # spurious: acknowledged already
    c.client_probe(10.0)  # keep-alive
    c.server_ack(10.001)  # keep-alive ACK
    c.client_rst(20.0)
    return c


def agree(path, at_least: int = 8):
    """tshark and tcplab agree on every frame; the flags tshark set, by name."""
    differ, flagged = compare(path)
    assert {name: frames for name, frames in differ.items() if frames} == {}
    assert sum(flagged.values()) >= at_least  # the capture did exercise the flags
    return flagged


def one_flow(path):
    flows = tf.analyze_file(path)
    assert [(f.client, f.server) for f in flows] == [(CLIENT, SERVER)]
    return flows[0]


def ip_packets(c: Conversation) -> list:
    return [p[IP] for p in c.packets]


def timed(packets, like):
    for p, q in zip(packets, like):
        p.time = q.time
    return packets


@pytest.mark.parametrize("name, wrap", [
    ("802.1Q", lambda ip: Ether(**MACS) / Dot1Q(vlan=300) / ip),
    ("QinQ", lambda ip: Ether(**MACS) / Dot1AD(vlan=10) / Dot1Q(vlan=300) / ip),
    ("GRE", lambda ip: Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(key_present=1, key=7, seqnum_present=1, sequence_number=1) / ip),
    ("GRE with Ethernet", lambda ip: Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x6558) / Ether(**MACS) / ip),
    ("VXLAN", lambda ip: Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / Ether(**MACS) / ip),
    ("IP in IP", lambda ip: Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / ip),
    ("IPv4 in IPv6", lambda ip: Ether(**MACS) / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=4) / ip),
])
def test_tunnels_and_tags_are_opened_to_the_inner_connection(tmp_path, name, wrap):
    c = eventful()
    path = tmp_path / "t.pcap"
    wrpcap(str(path), timed([wrap(ip) for ip in ip_packets(c)], c.packets))
    flow = one_flow(path)
    assert len(flow) == len(c.packets)
    agree(path)


@pytest.mark.parametrize("linktype, wrap", [
    (113, lambda ip: CookedLinux(pkttype=0, lladdrtype=1, proto=0x0800) / ip),  # Linux cooked (SLL)
    (276, lambda ip: CookedLinuxV2(proto=0x0800, ifindex=2, pkttype=0) / ip),  # SLL2 (tcpdump -i any)
    (101, lambda ip: ip),  # raw IP
    (0, lambda ip: Loopback(type=2) / ip),  # BSD loopback (AF_INET in the capturing machine's byte order)
])
def test_link_types_other_than_ethernet(tmp_path, linktype, wrap):
    c = eventful()
    path = tmp_path / "l.pcap"
    wrpcap(str(path), timed([wrap(ip) for ip in ip_packets(c)], c.packets), linktype=linktype)
    assert len(one_flow(path)) == len(c.packets)
    agree(path)


def raw_pcap(path, linktype: int, frames: list[tuple[float, bytes]]):
    """A classic pcap of the given link type, each frame's bytes as they are."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for t, data in frames:
            f.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(data), len(data)) + data)
    return path


def nflog(ip: bytes) -> bytes:
    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("<HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)
    return struct.pack("BBH", 2, 0, 0) + tlv(1, b"\x08\x00\x00\x00") + tlv(9, ip)


@pytest.mark.parametrize("linktype, head", [
    (9, lambda ip: b"\xff\x03\x00\x21" + ip),  # PPP
    (204, lambda ip: b"\x01\xff\x03\x00\x21" + ip),  # PPP with direction
    (104, lambda ip: b"\x0f\x00\x08\x00" + ip),  # Cisco HDLC
    (239, nflog),  # Linux NFLOG
    (228, lambda ip: ip),  # raw IPv4
])
def test_more_link_types(tmp_path, linktype, head):
    c = eventful()
    path = raw_pcap(tmp_path / "k.pcap", linktype, [(float(p.time), head(bytes(p[IP]))) for p in c.packets])
    assert len(one_flow(path)) == len(c.packets)
    agree(path)


def test_ip_fragments_are_read_where_they_complete_their_datagram(tmp_path):
    """Wireshark reassembles fragmented IP and analyses the segment at the fragment that completes it."""
    c = eventful()
    pkts = []
    for i, p in enumerate(c.packets):
        if p[TCP].payload and len(p[TCP].payload) >= 100 and i % 2 == 0:
            parts = fragment(p[IP], fragsize=48)
            if i % 4 == 0:
                parts = parts[1:] + parts[:1]  # out of order: the first fragment last
            pkts += [Ether(**MACS) / q for q in parts]
        else:
            pkts.append(p)
    for k, q in enumerate(pkts):
        q.time = c.t0 + k * 0.001
    path = tmp_path / "frag.pcap"
    wrpcap(str(path), pkts)
    assert len(one_flow(path)) == len(c.packets)
    agree(path)
    six = tmp_path / "frag6.pcap"
    v6 = []
    for k, p in enumerate(c.packets):
        src, dst = ("2001:db8::1", "2001:db8::2") if p[IP].src == CLIENT[0] else ("2001:db8::2", "2001:db8::1")
        pkt = IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=k) / p[TCP]
        v6 += [Ether(**MACS) / q for q in fragment6(pkt, 96)] if len(p[TCP].payload) >= 100 else [Ether(**MACS) / pkt]
    for k, q in enumerate(v6):
        q.time = c.t0 + k * 0.001
    wrpcap(str(six), v6)
    assert len(tf.analyze_file(six)[0]) == len(c.packets)
    agree(six)


def test_ipv6_with_extension_headers(tmp_path):
    """Hop-by-hop, routing, destination options and an atomic fragment header before TCP."""
    c = eventful()
    pkts = []
    for p in c.packets:
        tcp = p[TCP]
        src, dst = ("2001:db8::1", "2001:db8::2") if p[IP].src == CLIENT[0] else ("2001:db8::2", "2001:db8::1")
        ext = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[]) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(offset=0, m=0)
        pkts.append(Ether(**MACS) / IPv6(src=src, dst=dst) / ext / tcp)
    path = tmp_path / "v6.pcap"
    wrpcap(str(path), timed(pkts, c.packets))
    flows = tf.analyze_file(path)
    assert [(f.client, f.server) for f in flows] == [(("2001:db8::1", CLIENT[1]), ("2001:db8::2", SERVER[1]))]
    agree(path)


def test_a_short_snaplen_hides_no_payload_length(tmp_path):
    """tcpdump -s 54: headers only; every length comes from the IP header."""
    c = eventful()
    full = c.write(tmp_path / "full.pcap")
    path = snapped(full, tmp_path / "s.pcap", 54)
    assert [len(f) for f in tf.analyze_file(path)] == [len(f) for f in tf.analyze_file(full)]
    assert tf.analyze_file(path)[0].plen.sum() == tf.analyze_file(full)[0].plen.sum()
    agree(path)


def snapped(full: Path, out: Path, snaplen: int) -> Path:
    """A classic pcap written again as `tcpdump -s snaplen` would have captured it."""
    data = full.read_bytes()
    cut, off = bytearray(data[:24]), 24
    cut[16:20] = struct.pack("<I", snaplen)
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        keep = min(incl, snaplen)
        cut += data[off:off + 8] + struct.pack("<II", keep, incl) + data[off + 16:off + 16 + keep]
        off += 16 + incl
    out.write_bytes(bytes(cut))
    return out


def test_sequence_numbers_wrap_past_two_to_the_32(tmp_path):
    c = eventful(isn=2**32 - 150)
    path = c.write(tmp_path / "w.pcap")
    flow = one_flow(path)
    assert flow.rel_seq.max() > 150  # relative numbers keep growing across the wrap
    assert (flow.rel_seq >= 0).all()
    agree(path)


def test_a_reused_port_with_stray_segments_of_the_old_connection(tmp_path):
    old = eventful()
    old.client_fin(21.0)  # the old connection's last segments, after its RST, then a new handshake
    new = eventful(isn=900_000)
    for p in new.packets:
        p.time += 30
    path = tmp_path / "r.pcap"
    wrpcap(str(path), old.packets + new.packets)
    flows = tf.analyze_file(path)
    assert [len(f) for f in flows] == [len(old.packets), len(new.packets)]
    assert flows[1].wireshark[0] & (1 << capture.WS_FLAGS.index("reused_ports"))
    agree(path)


def test_a_capture_that_starts_mid_connection(tmp_path):
    """No handshake: the peer's first ACK is below the first byte seen; the first speaker is the client."""
    c = eventful()
    path = tmp_path / "m.pcap"
    wrpcap(str(path), c.packets[5:])  # from the client's data after the gap: the server's ACKs are below it
    (flow,) = tf.analyze_file(path)
    assert flow.client == CLIENT
    agree(path)


@pytest.mark.parametrize("syn_ws, synack_ws", [(7, None), (None, 7), (None, None), (14, 3)])
def test_window_scaling_offered_by_one_side_is_off_for_both(tmp_path, syn_ws, synack_ws):
    c = eventful()
    for p, ws in ((c.packets[0], syn_ws), (c.packets[1], synack_ws)):
        p[TCP].options = [("MSS", 1460)] + ([("WScale", ws)] if ws is not None else [])
    path = c.write(tmp_path / "ws.pcap")
    flow = one_flow(path)
    scaled = syn_ws is not None and synack_ws is not None
    data = flow.first(tf.DATA, tf.SERVER) or flow.first(tf.PURE_ACK, tf.SERVER)
    assert data.window == 512 << (synack_ws if scaled else 0)
    agree(path)


def test_pcapng_and_gzip_read_as_the_pcap(tmp_path):
    """The same capture as tshark -w writes it (pcapng), and gzipped: the same frames, the same flags."""
    c = eventful()
    path = c.write(tmp_path / "e.pcap")
    subprocess.run(["tshark", "-r", str(path), "-F", "pcapng", "-w", str(tmp_path / "e.pcapng")], check=True, capture_output=True)
    assert (tmp_path / "e.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    (tmp_path / "e.pcapng.gz").write_bytes(gzip.compress((tmp_path / "e.pcapng").read_bytes()))
    ours = [(int(s), int(w)) for s, w in zip(one_flow(path).table.index, one_flow(path).wireshark)]
    for other in ("e.pcapng", "e.pcapng.gz"):
        flow = one_flow(tmp_path / other)
        assert [(int(s), int(w)) for s, w in zip(flow.table.index, flow.wireshark)] == ours
        assert [round(float(t), 6) for t in flow.ts] == [round(float(t), 6) for t in one_flow(path).ts]


def test_frames_that_are_not_tcp_are_counted_with_the_reason(tmp_path):
    c = eventful()
    extra = [Ether(**MACS) / IP(src="10.9.9.9", dst="10.9.9.8") / UDP(sport=53, dport=53),
             Ether(type=0x0806, **MACS) / Raw(b"\0" * 28),
             Ether(**MACS) / IP(src="10.9.9.9", dst="10.9.9.8", flags="MF", frag=100) / Raw(b"x" * 40)]
    path = tmp_path / "x.pcap"
    wrpcap(str(path), c.packets + extra)
    found = capture.scan(path, keep_all=False)
    assert found.frames == len(c.packets) + 3
    assert found.skipped() == {"not IP": 1, "IP but not TCP": 1,
                               "IP fragments (a datagram is read at the fragment that completes it)": 1}


@pytest.mark.parametrize("content, why", [
    (b"", "empty"),
    (b"hello, world, this is not a capture at all", "not a pcap or pcapng file"),
    (bytes.fromhex("d4c3b2a1") + b"\0" * 10, "truncated"),
])
def test_an_unreadable_file_is_named_with_the_reason(tmp_path, content, why):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(LabError, match=why):
        capture.scan(path)


def test_a_file_damaged_midway_keeps_what_came_before(tmp_path):
    c = eventful()
    path = c.write(tmp_path / "d.pcap")
    data = bytearray(path.read_bytes())
    first = 24 + 16 + struct.unpack_from("<I", data, 24 + 8)[0]
    second = first + 16 + struct.unpack_from("<I", data, first + 8)[0]
    data[second + 8:second + 12] = struct.pack("<I", 0x7FFFFFFF)  # the third record claims 2 GB
    path.write_bytes(bytes(data))
    found = capture.scan(path)
    assert found.frames == 2
    assert "a record at byte" in found.damaged and "claims 2147483647 bytes" in found.damaged


@pytest.mark.parametrize("t0", [1_000_000.0, 0.0])  # epoch 0 too: Wireshark takes a zero time for "none"
def test_timing_ties_and_time_running_backwards_as_wireshark_counts_them(tmp_path, t0):
    """Exactly 20 ms after the duplicate ACKs (not a fast retransmission), a segment stamped before the
    one it follows (a retransmission, not out of order: Wireshark's times are unsigned), a first RTT of
    exactly zero (unknown, so 3 ms), a resend exactly 3 ms after the newest data."""
    c = Conversation(t0=t0)
    c._add(0.0, True, "S", options=[("MSS", 1460), ("WScale", 7)])
    c._add(0.0, False, "SA", options=[("MSS", 1460), ("WScale", 7)])
    c._add(0.0, True, "A")  # the handshake's ACK at the SYN's very time: a zero first RTT
    c.client_data(0.010, b"a" * 100)
    lost = c.cseq
    c.client_data(0.011, b"b" * 100)
    c.client_data(0.012, b"c" * 100)
    for k in range(3):
        c._add(0.013, False, "A")
    for p in c.packets[-3:]:
        p[TCP].ack = lost
    c.client_data(0.033, b"b" * 100, seq=lost)  # 20 ms to the microsecond after the last duplicate ACK
    c.client_data(0.040, b"d" * 100)
    c.client_data(0.043, b"d" * 100, seq=c.cseq - 100)  # 3 ms to the microsecond: not within
    c.client_data(0.050, b"e" * 100)
    c.client_data(0.049, b"e" * 100, seq=c.cseq - 100)  # stamped before the segment it repeats
    path = c.write(tmp_path / "t.pcap")
    flagged = agree(path, at_least=5)
    assert flagged["retransmission"] == 3 and flagged["fast_retransmission"] == 0 and flagged["out_of_order"] == 0

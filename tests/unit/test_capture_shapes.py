"""More of what other projects' captures carry, each read as tshark 4.0 reads it, frame by frame: the
UDP tunnels Wireshark opens by port, ERSPAN type I, tags after a cooked header, pseudowire Ethernet
over MPLS, 802.11 A-MSDUs and radiotap padding, TCP headers quoted in ICMP errors, IPv4 options
Wireshark cannot dissect, offloaded lengths (IPv4 total 0, IPv6 payload 0, an IP length past the frame),
a snaplen cutting into the TCP options, MPTCP options, pcapng simple packets, modified pcap."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, CookedLinux, Dot1Q, Ether
from scapy.packet import Raw

from lab.analysis import capture
from lab.analysis import tcpflow as tf
from tests.pcapbuild import MACS, Conversation
from tests.unit.test_capture_formats import agree, eventful, raw_pcap, snapped


def frames(c: Conversation, wrap) -> list[tuple[float, bytes]]:
    return [(float(p.time), bytes(wrap(p))) for p in c.packets]


def eth(inner) -> bytes:
    return bytes(Ether(**MACS) / inner)


def outer_udp(dport: int, payload: bytes) -> bytes:
    return eth(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=40000, dport=dport) / Raw(payload))


def as_v6(p):
    src, dst = ("2001:db8::1", "2001:db8::2") if p[IP].src == "10.0.1.1" else ("2001:db8::2", "2001:db8::1")
    return IPv6(src=src, dst=dst) / p[TCP]


@pytest.mark.parametrize("name, wrap", [
    ("Geneve", lambda p: outer_udp(6081, struct.pack(">BBHI", 0, 0, 0x6558, 42 << 8) + eth(p[IP]))),
    ("GTP-U", lambda p: outer_udp(2152, struct.pack(">BBHI", 0x30, 0xFF, len(bytes(p[IP])), 7) + bytes(p[IP]))),
    ("Teredo", lambda p: outer_udp(3544, bytes(as_v6(p)))),
    ("GRE in UDP", lambda p: outer_udp(4754, struct.pack(">HH", 0, 0x0800) + bytes(p[IP]))),
    ("L2TPv2", lambda p: outer_udp(1701, struct.pack(">HHHH", 0x4002, 12 + len(bytes(p[IP])), 7, 9) + b"\xff\x03\x00\x21" + bytes(p[IP]))),
    ("AYIYA", lambda p: outer_udp(5072, struct.pack(">BBBBI", 0x41, 0x00, 0x01, 41, 0) + b"\0" * 16 + bytes(as_v6(p)))),
    ("ERSPAN type I", lambda p: eth(IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x88BE) / Ether(**MACS) / p[IP])),
    ("EoMPLS without a control word", lambda p: bytes(Ether(type=0x8847, **MACS)) + struct.pack(">I", (16 << 12) | 0x100 | 64)
     + bytes(Ether(src="00:1b:21:00:00:01", dst="00:0c:29:00:00:02") / p[IP])),  # Intel and VMware: vendors Wireshark knows
    ("EoMPLS with a control word", lambda p: bytes(Ether(type=0x8847, **MACS)) + struct.pack(">II", (16 << 12) | 0x100 | 64, 0)
     + bytes(Ether(src="00:0c:29:11:22:33", dst="00:1b:21:3a:4b:5c") / p[IP])),
])
def test_tunnels_wireshark_opens(tmp_path, name, wrap):
    c = eventful()
    path = raw_pcap(tmp_path / "t.pcap", 1, frames(c, wrap))
    assert len(tf.analyze_file(path)[0]) == len(c.packets)
    agree(path)


def test_pppoe_as_bsd_captures_it(tmp_path):
    c = eventful()
    path = raw_pcap(tmp_path / "p.pcap", 51, frames(c, lambda p: struct.pack(">BBHHH", 0x11, 0, 1, len(bytes(p[IP])) + 2, 0x21) + bytes(p[IP])))
    assert len(tf.analyze_file(path)[0]) == len(c.packets)
    agree(path)


def test_a_vlan_tag_after_a_linux_cooked_header(tmp_path):
    c = eventful()
    path = raw_pcap(tmp_path / "s.pcap", 113, frames(c, lambda p: bytes(CookedLinux(pkttype=0, lladdrtype=1, proto=0x8100) / Dot1Q(vlan=7) / p[IP])))
    assert len(tf.analyze_file(path)[0]) == len(c.packets)
    agree(path)


@pytest.mark.parametrize("radiotap", [False, True])
def test_80211_amsdu_and_radiotap_padding(tmp_path, radiotap):
    """A QoS data frame carrying an A-MSDU subframe; through radiotap with the data-pad flag, its
    26-byte header padded to 28."""
    def wifi(p):
        ip = bytes(p[IP])
        head = struct.pack("<HH", 0x0288, 0) + b"\x02" * 6 + b"\x04" * 6 + b"\x06" * 6 + struct.pack("<H", 0) + struct.pack("<H", 0x0080)
        sub = b"\x02" * 6 + b"\x04" * 6 + struct.pack(">H", 8 + len(ip)) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip
        if not radiotap:
            return head + sub
        rt = struct.pack("<BBHI", 0, 0, 9, 0x02) + b"\x20"  # present: flags; flags: data pad
        return rt + head + b"\0\0" + sub
    c = eventful()
    path = raw_pcap(tmp_path / "w.pcap", 127 if radiotap else 105, frames(c, wifi))
    assert len(tf.analyze_file(path)[0]) == len(c.packets)
    agree(path)


def test_a_rst_quoted_in_an_icmp_error_shows_its_flag_and_nothing_else(tmp_path):
    c = eventful()
    rst = c.packets[-1]
    quoted = eth(IP(src="10.0.1.2", dst="10.0.1.1") / ICMP(type=3, code=3) / bytes(rst[IP])[:28 + 8])
    path = raw_pcap(tmp_path / "i.pcap", 1, frames(c, bytes) + [(float(rst.time) + 0.001, quoted)])
    flagged = agree(path)
    assert flagged["reset"] == 2
    found = capture.scan(path)
    assert found.skipped() == {"TCP headers quoted in ICMP errors (their RST flag shown, not analysed)": 1}


def test_an_ipv4_option_wireshark_cannot_dissect_hides_the_tcp_behind_it(tmp_path):
    c = eventful()
    with_rr = lambda p: eth(IP(src=p[IP].src, dst=p[IP].dst, options=[Raw(b"\x07\x02\x00\x00")]) / p[TCP])  # noqa: E731
    recs = [(t, with_rr(p) if k in (6, 7) else bytes(p)) for k, (t, p) in enumerate((float(p.time), p) for p in c.packets)]
    path = raw_pcap(tmp_path / "o.pcap", 1, recs)
    agree(path)
    assert capture.scan(path).skipped() == {"IPv4 options too short for their kind": 2}


def offloaded(c: Conversation, how: str) -> list[tuple[float, bytes, int]]:
    out = []
    for p in c.packets:
        b = bytearray(bytes(p if how != "v6" else Ether(**MACS) / as_v6(p)))
        wire = len(b)
        if how == "tso" and p[TCP].payload:
            b[16:18] = b"\0\0"  # IPv4 total length 0, and the frame cut at 66 bytes
            b = b[:66]
        elif how == "long" and p[TCP].payload:
            b[16:18] = struct.pack(">H", len(b) - 14 + 100)  # the IP header claims 100 bytes more than the frame
        elif how == "v6" and p[TCP].payload:
            b[18:20] = b"\0\0"  # IPv6 payload length 0
        out.append((float(p.time), bytes(b), wire))
    return out


@pytest.mark.parametrize("how", ["tso", "long", "v6"])
def test_offloaded_lengths_read_as_wireshark_reads_them(tmp_path, how):
    path = tmp_path / "l.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, b, wire in offloaded(eventful(), how):
            f.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(b), wire) + b)
    agree(path, at_least=1)


def test_a_snaplen_cutting_into_the_options_hides_the_flags_but_not_the_state(tmp_path):
    """Timestamps on every segment, the capture cut at 60 bytes: Wireshark's option dissection throws, so
    it shows none of those frames' analysis flags (and a SYN settles no window scale); the analysis ran."""
    c = eventful()
    for p in c.packets:
        p[TCP].options = (p[TCP].options or []) + [("NOP", None), ("NOP", None), ("Timestamp", (1, 0))]
    full = c.write(tmp_path / "full.pcap")
    path = snapped(full, tmp_path / "cut.pcap", 60)
    assert agree(full)["duplicate_ack"] == 3
    assert sum(agree(path, at_least=1).values()) == 1  # only the RST's flag is left to show


def test_mptcp_operations_excuse_a_duplicate_ack(tmp_path):
    """Once MP_CAPABLE has started Wireshark's MPTCP analysis, a duplicate ACK that follows new MPTCP
    operations is not counted as one (RFC 8684 4)."""
    c = eventful()
    for p in c.packets[:2]:
        p[TCP].options = p[TCP].options + [(30, b"\x00\x81" + b"\x11" * 8)]  # MP_CAPABLE with a key
    for p in c.packets[5:]:
        if p[TCP].ack and not p[TCP].payload:
            p[TCP].options = [(30, b"\x20\x00")]  # MPTCP DSS (subtype 2), no mappings
            break
    agree(c.write(tmp_path / "m.pcap"))


def test_pcapng_simple_packets_have_no_time_for_the_analysis(tmp_path):
    c = eventful()
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)) + block(1, struct.pack("<HHI", 1, 0, 0))
    for k, p in enumerate(c.packets):
        b = bytes(p)
        if k % 3 == 2:
            out += block(3, struct.pack("<I", len(b)) + b)
        else:
            t = int(round(float(p.time) * 1e6))
            out += block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(b), len(b)) + b)
    path = tmp_path / "s.pcapng"
    path.write_bytes(out)
    agree(path)


def test_modified_pcap_is_read(tmp_path):
    c = eventful()
    path = tmp_path / "k.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1))
        for p in c.packets:
            b, t = bytes(p), float(p.time)
            f.write(struct.pack("<IIIIIHBB", int(t), int(round((t % 1) * 1e6)), len(b), len(b), 1, 0x0800, 0, 0) + b)
    assert len(tf.analyze_file(path)[0]) == len(c.packets)
    agree(path)


@pytest.mark.parametrize("thl, shown", [(4, False), (15, True)])  # 16 bytes of header: bogus, analysed; 60 in a 40-byte IP packet: short
def test_tcp_headers_wireshark_cannot_analyse(tmp_path, thl, shown):
    c = eventful()
    rst = c.packets[-1]
    bad = bytearray(bytes(rst))
    bad[14 + 20 + 12] = (thl << 4) | (bad[14 + 20 + 12] & 0x0F)
    path = raw_pcap(tmp_path / "h.pcap", 1, frames(c, bytes)[:-1] + [(float(rst.time), bytes(bad))])
    flagged = agree(path)
    assert flagged["reset"] == (1 if shown else 0)

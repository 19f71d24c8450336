# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One pass over a capture, packet by packet, in compiled code: records found in classic pcap or
pcapng, headers decoded down to TCP (lab/analysis/decode.pxi), each segment put in its connection and
labelled with Wireshark's TCP analysis flags and tcplab's own labels.

Why compiled, and why not a library: the analyzer must run at least fifty times tshark's rate whole
process against whole process, on files larger than memory. A Python object per packet (scapy, dpkt,
pyshark) costs microseconds, and numpy's columns need the whole file in memory and lose to any
sequential state (duplicate ACK runs, the highest sequence number so far). Wireshark's own analysis
is the reference, and it is sequential: this is the same state machine (epan/dissectors/packet-tcp.c,
tcp_analyze_sequence_number, as of 4.0), a few tens of nanoseconds a packet.

The caller (lab/analysis/capture.py) hands blocks of the file to Scanner.feed(); the scanner keeps what
it needs between blocks (the file format, interfaces, every connection's state), so memory stays flat
however long the file is. Rows come out in numpy arrays the caller empties after each feed.
"""
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy, memset

import numpy as np

include "decode.pxi"

# Wireshark's TCP analysis flags (tcp.analysis.*), one bit each, in tshark's field names.
WS_FLAGS = ["keep_alive", "keep_alive_ack", "zero_window", "zero_window_probe", "zero_window_probe_ack",
            "window_update", "window_full", "retransmission", "fast_retransmission", "spurious_retransmission",
            "out_of_order", "duplicate_ack", "lost_segment", "ack_lost_segment", "reused_ports", "reset"]
cdef enum:
    W_KEEP_ALIVE = 1 << 0
    W_KEEP_ALIVE_ACK = 1 << 1
    W_ZERO_WINDOW = 1 << 2
    W_ZERO_WINDOW_PROBE = 1 << 3
    W_ZERO_WINDOW_PROBE_ACK = 1 << 4
    W_WINDOW_UPDATE = 1 << 5
    W_WINDOW_FULL = 1 << 6
    W_RETRANSMISSION = 1 << 7
    W_FAST_RETRANSMISSION = 1 << 8
    W_SPURIOUS_RETRANSMISSION = 1 << 9
    W_OUT_OF_ORDER = 1 << 10
    W_DUPLICATE_ACK = 1 << 11
    W_LOST_SEGMENT = 1 << 12
    W_ACK_LOST_SEGMENT = 1 << 13
    W_REUSED_PORTS = 1 << 14
    W_RESET = 1 << 15
    W_QUOTED = 1 << 16  # not Wireshark's: a TCP header quoted in an ICMP error, shown but not analysed

cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PSH = 0x08
    TH_ACK = 0x10

# tcplab's labels (lab/analysis/tcpflow.py's LABELS, in the same order): the first ones set here.
cdef enum:
    L_SYN = 1 << 0
    L_SYN_ACK = 1 << 1
    L_DATA = 1 << 2
    L_ACK = 1 << 3
    L_FIN = 1 << 4
    L_RST = 1 << 5
    L_KEEPALIVE = 1 << 6
    L_KEEPALIVE_ACK = 1 << 7
    L_ZERO_WINDOW = 1 << 8
    L_ZERO_WINDOW_PROBE = 1 << 9
    L_ZERO_WINDOW_PROBE_ACK = 1 << 10
    L_WINDOW_UPDATE = 1 << 11
    L_RETRANSMISSION = 1 << 12
    L_WINDOW_FULL = 1 << 13
    L_RFC_ZERO_WINDOW_PROBE = 1 << 14
    L_OUT_OF_ORDER = 1 << 15
    L_FAST_RETRANSMISSION = 1 << 19

# Wireshark's constants, in nanoseconds as it counts them: a fast retransmission within 20 ms of the
# last duplicate ACK; reordering within the first RTT, or 3 ms before one is known. Times are compared
# as Wireshark does, in whole nanoseconds and unsigned: a time that went backwards is never "within".
cdef unsigned long long FAST_RETRANSMIT_WITHIN = 20000000
cdef unsigned long long DEFAULT_REORDER_WINDOW = 3000000

cdef struct Unwrapped:
    bint seen
    unsigned int last           # the last raw 32-bit value
    long long rel               # its unwrapped relative value


cdef inline long long unwrap(Unwrapped* u, unsigned int raw, unsigned int base) noexcept nogil:
    """A 32-bit sequence number as a relative one that keeps growing past 2**32 (a flow can carry more
    than 4 GB): the step from the last one, taken as signed; the first one relative to `base`."""
    u.rel = u.rel + <int>(raw - u.last) if u.seen else <long long>(<unsigned int>(raw - base))
    u.last = raw
    u.seen = True
    return u.rel


cdef struct Dir:
    # Wireshark's per-direction state (tcp_flow_t and tcp_analyze_seq_flow_info_t)
    bint base_set
    unsigned int base_seq       # the SYN's sequence number, else the first one seen less one
    unsigned int nextseq        # 0: not known yet (Wireshark's convention, kept for the same answers)
    long long nextseqtime       # nanoseconds
    unsigned int maxseqtobeacked
    unsigned int lastack
    long long lastacktime       # nanoseconds
    long long window            # raw, as Wireshark compares it; 2**32 - 1 before the first segment
    int win_scale               # -1: not known, -2: no scaling, else the shift
    bint is_first_ack           # a SYN seen and no pure ACK since (its window is not scaled yet)
    int lastflags               # Wireshark flags of this side's last segment
    int dupacknum               # -1 after an ACK of unseen data (unsigned in Wireshark: counts as many)
    int mp_snap                 # the connection's MPTCP option kinds as this side's last segment found them
    # tcplab's own: unwrapped relative numbers, and the summary
    Unwrapped seqs             # this side's sequence numbers, relative to its base
    Unwrapped acks             # its acknowledgements, relative to the peer's base
    long long scaled_window     # the last window, scaled (-1: none yet)
    long long packets
    long long payload
    long long dupacks           # duplicate ACKs this side sent (Wireshark's count)
    long long last_frame
    int mss
    bint sack_ok
    bint timestamps
    bint syn_seen
    double last_ts


cdef struct Conv:
    Dir d[2]                    # d[0]: the client's side, d[1]: the server's
    int family
    unsigned char caddr[16]
    int cport
    long long syn_time          # the most recent pure SYN (Wireshark's ts_mru_syn), ns; 0: none
    long long first_rtt         # ns; 0: not known (a first RTT of exactly 0 stays unknown, as in Wireshark)
    double first_ts
    double last_ts
    int mp_ops                  # MPTCP option subtypes seen on the connection, a bit each (Wireshark's mp_operations)


cdef inline bint gt_seq(unsigned int a, unsigned int b) noexcept nogil:
    return <int>(a - b) > 0

cdef inline bint lt_seq(unsigned int a, unsigned int b) noexcept nogil:
    return <int>(a - b) < 0

cdef inline bint le_seq(unsigned int a, unsigned int b) noexcept nogil:
    return <int>(a - b) <= 0


cdef enum:
    FMT_UNKNOWN = 0
    FMT_PCAP = 1
    FMT_PCAPNG = 2

cdef enum:
    MAX_INTERFACES = 4096
    MAX_DATAGRAMS = 1024


cdef class Scanner:
    """Feeds on a capture's bytes block by block; see the module docstring."""

    # the file
    cdef int fmt
    cdef bint swap                        # the file is little-endian
    cdef int extra                        # bytes a record header has past the usual 16 (modified pcap: 8)
    cdef double tick
    cdef int linktype
    cdef int if_link[MAX_INTERFACES]
    cdef double if_per_second[MAX_INTERFACES]
    cdef long long if_offset[MAX_INTERFACES]
    cdef int interfaces
    cdef public long long frames
    cdef public double last_ts            # the last record's time: where the capture ends
    cdef long long now_ns                 # the current record's time in nanoseconds (Wireshark's comparisons)
    cdef public long long offset           # bytes of the file consumed so far
    cdef public object skipped            # reason -> count
    cdef dict pieces                      # IP fragments waiting for the rest of their datagram
    cdef bytes reassembled
    cdef public object links              # link types seen
    cdef public bint cut_short            # the file ended inside a record
    cdef public object damaged            # why reading stopped before the end of the file (None: it did not)
    # connections
    cdef Conv* convs
    cdef Py_ssize_t nconv, cap_conv
    cdef dict index                       # 4-tuple key -> connection number
    cdef public list endpoints            # connection number -> (family, client addr bytes, client port, server addr bytes, server port)
    cdef unsigned char last_key[40]
    cdef int last_keylen
    cdef Py_ssize_t last_conv
    # output rows
    cdef public bint keep_all             # every segment (else only those with a Wireshark flag or a label worth a finding)
    cdef public Py_ssize_t capacity
    cdef public Py_ssize_t rows
    cdef long long[::1] o_index
    cdef double[::1] o_ts
    cdef long long[::1] o_conv
    cdef unsigned char[::1] o_from_server
    cdef long long[::1] o_seq, o_ack, o_flags, o_win, o_window, o_plen, o_rel_seq, o_rel_ack, o_labels, o_ws
    cdef long long[::1] o_wscale, o_mss, o_nxt_before, o_peer_ack
    cdef double[::1] o_nxt_time, o_prev_ts, o_peer_ts
    cdef long long[::1] o_peer_frame
    cdef public dict out
    # per-frame Wireshark flags of every TCP frame (for a label per frame)
    cdef public bint frame_flags
    cdef long long[::1] f_index
    cdef long long[::1] f_ws
    cdef public Py_ssize_t frame_rows

    def __cinit__(self):
        self.convs = NULL

    def __init__(self, Py_ssize_t capacity=1 << 16, bint keep_all=True, bint frame_flags=False):
        self.capacity = capacity
        self.keep_all = keep_all
        self.frame_flags = frame_flags
        self.fmt = FMT_UNKNOWN
        self.skipped = {}
        self.pieces = {}
        self.links = set()
        self.index = {}
        self.endpoints = []
        self.cap_conv = 64
        self.convs = <Conv*>malloc(self.cap_conv * sizeof(Conv))
        if self.convs == NULL:
            raise MemoryError()
        self.last_keylen = 0
        i64 = lambda: np.empty(capacity, dtype=np.int64)
        self.out = dict(index=i64(), ts=np.empty(capacity, dtype=np.float64), conv=i64(),
                        from_server=np.empty(capacity, dtype=np.uint8), seq=i64(), ack=i64(), flags=i64(), win=i64(),
                        window=i64(), plen=i64(), rel_seq=i64(), rel_ack=i64(), labels=i64(), ws=i64(), wscale=i64(),
                        mss=i64(), nxt_before=i64(), nxt_time=np.empty(capacity, dtype=np.float64), peer_ack=i64(),
                        prev_ts=np.empty(capacity, dtype=np.float64), peer_ts=np.empty(capacity, dtype=np.float64),
                        peer_frame=i64())
        o = self.out
        self.o_index, self.o_ts, self.o_conv, self.o_from_server = o["index"], o["ts"], o["conv"], o["from_server"]
        self.o_seq, self.o_ack, self.o_flags, self.o_win, self.o_window = o["seq"], o["ack"], o["flags"], o["win"], o["window"]
        self.o_plen, self.o_rel_seq, self.o_rel_ack, self.o_labels, self.o_ws = o["plen"], o["rel_seq"], o["rel_ack"], o["labels"], o["ws"]
        self.o_wscale, self.o_mss, self.o_nxt_before, self.o_nxt_time, self.o_peer_ack = o["wscale"], o["mss"], o["nxt_before"], o["nxt_time"], o["peer_ack"]
        self.o_prev_ts, self.o_peer_ts, self.o_peer_frame = o["prev_ts"], o["peer_ts"], o["peer_frame"]
        self.f_index = np.empty(capacity if frame_flags else 1, dtype=np.int64)
        self.f_ws = np.empty(capacity if frame_flags else 1, dtype=np.int64)

    def __dealloc__(self):
        if self.convs != NULL:
            free(self.convs)

    def take(self) -> dict:
        """The rows filled since the last take, as numpy arrays of their own; the scanner starts afresh."""
        n = self.rows
        got = {name: col[:n].copy() for name, col in self.out.items()}
        self.rows = 0
        return got

    def take_frames(self):
        """(frame numbers, Wireshark flags) of every TCP frame since the last call."""
        n = self.frame_rows
        got = (np.asarray(self.f_index)[:n].copy(), np.asarray(self.f_ws)[:n].copy())
        self.frame_rows = 0
        return got

    @property
    def connections(self) -> int:
        return self.nconv

    def summary(self, Py_ssize_t i) -> dict:
        """What a connection's summary is made of: per side packets, payload bytes, MSS, window scale,
        SACK and timestamps offered in its SYN; the first RTT (Wireshark's initial RTT)."""
        if not 0 <= i < self.nconv:
            raise IndexError(f"no connection {i}: there are {self.nconv}")
        cdef Conv* c = &self.convs[i]
        sides = []
        for s in range(2):
            d = &c.d[s]
            sides.append(dict(packets=d.packets, payload=d.payload, duplicate_acks=d.dupacks, mss=d.mss if d.mss > 0 else None,
                              wscale=d.win_scale if d.win_scale >= 0 else None, sack=bool(d.sack_ok),
                              timestamps=bool(d.timestamps), syn_seen=bool(d.syn_seen), last_ts=d.last_ts,
                              highest=(<long long>d.nextseq - d.base_seq) & 0xFFFFFFFF if d.base_set else 0))
        return dict(first_ts=c.first_ts, last_ts=c.last_ts, first_rtt=c.first_rtt / 1e9 if c.first_rtt != 0 else None,
                    client=sides[0], server=sides[1])

    def feed(self, const unsigned char[::1] buf, bint eof=False) -> Py_ssize_t:
        """Reads whole records from buf until it ends or the output is full; returns the bytes used.
        The caller passes the rest again, with more of the file behind it."""
        cdef Py_ssize_t n = buf.shape[0]
        if n == 0:
            return 0
        cdef const unsigned char* p = &buf[0]
        if self.fmt == FMT_UNKNOWN:
            return self._header(p, n, eof)
        if self.fmt == FMT_PCAP:
            return self._pcap(p, n, eof)
        return self._pcapng(p, n, eof)

    cdef Py_ssize_t _header(self, const unsigned char* p, Py_ssize_t n, bint eof) except -1:
        cdef unsigned int magic
        if n < 24:
            if eof:
                raise ValueError("too short for a capture file's header (%d bytes): the file is truncated" % n)
            return 0
        if memcmp(p, b"\x0a\x0d\x0d\x0a", 4) == 0:
            self.fmt = FMT_PCAPNG
            return self._pcapng(p, n, eof)
        magic = p[0] | (p[1] << 8) | (p[2] << 16) | (<unsigned int>p[3] << 24)
        self.extra = 0
        if magic == 0xA1B2C3D4 or magic == 0xA1B23C4D:  # read little-endian, it is the magic: a little-endian file
            self.swap = True
        elif magic == 0xD4C3B2A1 or magic == 0x4D3CB2A1:
            self.swap = False
        elif magic == 0xA1B2CD34 or magic == 0x34CDB2A1:  # Kuznetzov's modified pcap: 8 more bytes a record
            self.swap = magic == 0xA1B2CD34
            self.extra = 8
        else:
            raise ValueError("not a pcap or pcapng file (it starts with %s)" % bytes(p[:4]).hex())
        self.tick = 1e-9 if (magic == 0xA1B23C4D or magic == 0x4D3CB2A1) else 1e-6
        self.linktype = self._u32(p + 20) & 0x0FFFFFFF
        self.links.add(self.linktype)
        self.fmt = FMT_PCAP
        self.offset += 24
        return 24 + self._pcap(p + 24, n - 24, eof)

    cdef inline unsigned int _u32(self, const unsigned char* p) noexcept nogil:
        if self.swap:
            return (<unsigned int>p[3] << 24) | (p[2] << 16) | (p[1] << 8) | p[0]
        return (<unsigned int>p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]

    cdef inline unsigned int _u16(self, const unsigned char* p) noexcept nogil:
        if self.swap:
            return (p[1] << 8) | p[0]
        return (p[0] << 8) | p[1]

    cdef Py_ssize_t _pcap(self, const unsigned char* p, Py_ssize_t n, bint eof) except -1:
        cdef Py_ssize_t off = 0
        cdef unsigned int incl, orig
        cdef double ts
        cdef Py_ssize_t head = 16 + self.extra
        while off + head <= n:
            if self.rows >= self.capacity or self.frame_rows >= self.capacity:
                break
            incl = self._u32(p + off + 8)
            orig = self._u32(p + off + 12)
            if incl > 0x4000000:  # 64 MiB: no link carries such a frame; the file is damaged here
                return self._damaged(off, n, "a record at byte %d claims %d bytes" % (self.offset + off, incl))
            if off + head + incl > n:
                break
            ts = self._u32(p + off) + self._u32(p + off + 4) * self.tick
            self.now_ns = <long long>self._u32(p + off) * 1000000000 + <long long>self._u32(p + off + 4) * (1000 if self.tick > 1e-7 else 1)
            self.last_ts = ts
            self.frames += 1
            self._packet(self.linktype, p + off + head, incl, ts, orig if orig >= incl else incl)
            off += head + incl
        if eof and off < n and self.rows < self.capacity and self.frame_rows < self.capacity:
            self.cut_short = True
            off = n
        self.offset += off
        return off

    cdef Py_ssize_t _pcapng(self, const unsigned char* p, Py_ssize_t n, bint eof) except -1:
        cdef Py_ssize_t off = 0, body
        cdef unsigned int kind, length, iface, caplen, hi, lo, link, wire
        cdef unsigned long long ticks, per
        cdef double ts
        while off + 12 <= n:
            if self.rows >= self.capacity or self.frame_rows >= self.capacity:
                break
            if memcmp(p + off, b"\x0a\x0d\x0d\x0a", 4) == 0:
                if memcmp(p + off + 8, b"\x4d\x3c\x2b\x1a", 4) == 0:
                    self.swap = True
                elif memcmp(p + off + 8, b"\x1a\x2b\x3c\x4d", 4) == 0:
                    self.swap = False
                else:
                    return self._damaged(off, n, "a pcapng section at byte %d has an unknown byte order" % (self.offset + off))
                self.interfaces = 0  # interface numbers start again in each section
            kind = self._u32(p + off)
            length = self._u32(p + off + 4)
            if length < 12 or length % 4 or length > 0x4000000:
                if eof and n - off < 64:  # what a capture stopped mid-write leaves
                    break
                return self._damaged(off, n, "a pcapng block at byte %d has length %d" % (self.offset + off, length))
            if off + length > n:
                break
            body = off + 8
            # each kind's fixed part must fit in its block: a shorter one is damage, not a packet
            if (kind == 1 and length < 20) or ((kind == 6 or kind == 2) and length < 32) or (kind == 3 and length < 16):
                return self._damaged(off, n, "a pcapng block of type %d at byte %d is %d bytes, too short for its fields" % (kind, self.offset + off, length))
            if kind == 1:  # interface description
                if self.interfaces >= MAX_INTERFACES:
                    return self._damaged(off, n, "more than %d interfaces in one pcapng section" % MAX_INTERFACES)
                link = self._u16(p + body)
                self.if_link[self.interfaces] = link
                self.links.add(link)
                self._if_options(p + body + 8, p + off + length - 4, self.interfaces)
                self.interfaces += 1
            elif kind == 6 or kind == 2:  # enhanced packet, obsolete packet
                if kind == 6:
                    iface = self._u32(p + body)
                    hi = self._u32(p + body + 4)
                    lo = self._u32(p + body + 8)
                else:
                    iface = self._u16(p + body)
                    hi = self._u32(p + body + 4)
                    lo = self._u32(p + body + 8)
                caplen = self._u32(p + body + 12)
                wire = self._u32(p + body + 16)
                if iface >= <unsigned int>self.interfaces:
                    return self._damaged(off, n, "a packet at byte %d names interface %d, which no interface block describes" % (self.offset + off, iface))
                if caplen > length - 32:
                    caplen = length - 32
                ticks = (<unsigned long long>hi << 32) | lo
                per = <unsigned long long>self.if_per_second[iface]
                ts = <double>(ticks // per + self.if_offset[iface]) + <double>(ticks % per) / per
                if per <= 1000000000 and 1000000000 % per == 0:
                    self.now_ns = (<long long>(ticks // per) + self.if_offset[iface]) * 1000000000 + <long long>((ticks % per) * (1000000000 // per))
                else:
                    self.now_ns = (<long long>(ticks // per) + self.if_offset[iface]) * 1000000000 + <long long>((<double>(ticks % per)) * 1e9 / per)
                self.last_ts = ts
                self.frames += 1
                self._packet(self.if_link[iface], p + body + 20, caplen, ts, wire if wire >= caplen else caplen)
            elif kind == 3:  # simple packet: no interface number, no time
                if self.interfaces == 0:
                    return self._damaged(off, n, "a simple packet at byte %d comes before any interface block" % (self.offset + off))
                caplen = self._u32(p + body)
                wire = caplen
                if caplen > length - 16:
                    caplen = length - 16
                self.frames += 1
                self.now_ns = 0  # a simple packet has no time: Wireshark's analysis sees zero (shown: the last one's)
                self._packet(self.if_link[0], p + body + 4, caplen, self.last_ts, wire if wire >= caplen else caplen)
            off += length
        if eof and off < n and self.rows < self.capacity and self.frame_rows < self.capacity:
            self.cut_short = True
            off = n
        self.offset += off
        return off

    cdef Py_ssize_t _damaged(self, Py_ssize_t off, Py_ssize_t n, str why) except -1:
        """Stops reading: what came before stays read, the rest of the buffer is taken as used."""
        self.damaged = why
        self.offset += off
        return n

    cdef void _if_options(self, const unsigned char* p, const unsigned char* end, int i):
        cdef unsigned int code, length, v
        self.if_per_second[i] = 1e6
        self.if_offset[i] = 0
        while p + 4 <= end:
            code = self._u16(p)
            length = self._u16(p + 2)
            if code == 0 or p + 4 + length > end:
                break
            if code == 9 and length >= 1:  # if_tsresol: a power of ten, or of two with the top bit
                v = p[4]
                if (v & 0x80 and (v & 0x7F) <= 63) or (not v & 0x80 and v <= 19):  # beyond: no 64-bit tick count; keep microseconds
                    self.if_per_second[i] = (2.0 ** (v & 0x7F)) if v & 0x80 else (10.0 ** v)
            elif code == 14 and length >= 8:  # if_tsoffset, seconds
                self.if_offset[i] = <long long>((<unsigned long long>self._u32(p + 4) << 32) | self._u32(p + 8)) if not self.swap \
                    else <long long>((<unsigned long long>self._u32(p + 8) << 32) | self._u32(p + 4))
            p += 4 + length + ((4 - length % 4) % 4)

    cdef void _skip(self, int why):
        self.skipped[why] = self.skipped.get(why, 0) + 1

    cdef Py_ssize_t _conversation(self, Pkt* k, int* from_server):
        """The connection a segment belongs to (made when first seen), and which side sent it."""
        cdef unsigned char key[40]
        cdef int alen = 4 if k.family == 4 else 16
        cdef int keylen = 2 * alen + 4
        cdef int order = memcmp(k.src, k.dst, alen)
        if order == 0:
            order = k.sport - k.dport
        # the key: the lower endpoint first, so both directions find the same connection
        if order <= 0:
            memcpy(key, k.src, alen); memcpy(key + alen, k.dst, alen)
            key[2 * alen] = k.sport >> 8; key[2 * alen + 1] = k.sport & 0xFF
            key[2 * alen + 2] = k.dport >> 8; key[2 * alen + 3] = k.dport & 0xFF
        else:
            memcpy(key, k.dst, alen); memcpy(key + alen, k.src, alen)
            key[2 * alen] = k.dport >> 8; key[2 * alen + 1] = k.dport & 0xFF
            key[2 * alen + 2] = k.sport >> 8; key[2 * alen + 3] = k.sport & 0xFF
        cdef Py_ssize_t ci
        if keylen == self.last_keylen and memcmp(key, self.last_key, keylen) == 0:
            ci = self.last_conv
        else:
            pykey = bytes(key[:keylen])
            found = self.index.get(pykey)
            if found is None:
                ci = self._new_conversation(k)
                self.index[pykey] = ci
            else:
                ci = found
            memcpy(self.last_key, key, keylen)
            self.last_keylen = keylen
            self.last_conv = ci
        cdef Conv* c = &self.convs[ci]
        from_server[0] = not (memcmp(k.src, c.caddr, alen) == 0 and k.sport == c.cport)
        return ci

    cdef Py_ssize_t _new_conversation(self, Pkt* k) except -1:
        """A new connection: the client is the SYN's sender, the SYN-ACK's receiver, else whoever spoke first."""
        cdef Conv* grown
        if self.nconv == self.cap_conv:
            grown = <Conv*>realloc(self.convs, 2 * self.cap_conv * sizeof(Conv))
            if grown == NULL:
                raise MemoryError()
            self.convs = grown
            self.cap_conv *= 2
        cdef Py_ssize_t ci = self.nconv
        self.nconv += 1
        cdef Conv* c = &self.convs[ci]
        memset(c, 0, sizeof(Conv))
        cdef int alen = 4 if k.family == 4 else 16
        c.family = k.family
        reverse = (k.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)
        if reverse:
            memcpy(c.caddr, k.dst, alen)
            c.cport = k.dport
            self.endpoints.append((k.family, bytes(k.dst[:alen]), k.dport, bytes(k.src[:alen]), k.sport))
        else:
            memcpy(c.caddr, k.src, alen)
            c.cport = k.sport
            self.endpoints.append((k.family, bytes(k.src[:alen]), k.sport, bytes(k.dst[:alen]), k.dport))
        for s in range(2):
            c.d[s].win_scale = -1
            c.d[s].window = 0xFFFFFFFF
            c.d[s].scaled_window = -1
            c.d[s].mss = -1
        return ci

    cdef void _packet(self, int link, const unsigned char* p, Py_ssize_t n, double ts, Py_ssize_t wire):
        cdef Pkt k
        k.frame = p
        k.wire = wire
        k.quoted = False
        k.opts_cut = False
        k.bogus = False
        cdef int why = decode_link(link, p, n, &k)
        if why == PIECE:
            why = self._piece(&k)
        if why == QUOTED or why == SHORT_SEGMENT:
            self._skip(why)
            if self.frame_flags:
                self.f_index[self.frame_rows] = self.frames
                self.f_ws[self.frame_rows] = W_QUOTED | (W_RESET if k.flags & TH_RST else 0)
                self.frame_rows += 1
            return
        if why != OK_TCP:
            self._skip(why)
            return
        cdef int from_server
        cdef int ws = 0
        cdef Py_ssize_t ci = self._conversation(&k, &from_server)
        if k.flags & TH_SYN:
            ci = self._syn(ci, &k, &from_server, &ws)
        self._analyze(ci, from_server, &k, ts, ws)

    cdef int _piece(self, Pkt* k):
        """A fragment of an IP datagram: kept until the datagram is whole, which is then decoded at the
        frame of the fragment that completed it, as Wireshark reassembles and analyses it. Fragments are
        rare: this is Python, with at most MAX_DATAGRAMS datagrams waiting (the oldest dropped)."""
        cdef int alen = 4 if k.family == 4 else 16
        key = (k.family, bytes(k.src[:alen]), bytes(k.dst[:alen]), k.frag_id, k.frag_proto)
        d = self.pieces.get(key)
        if d is None:
            if len(self.pieces) >= MAX_DATAGRAMS:
                self.pieces.pop(next(iter(self.pieces)))
            d = self.pieces[key] = {"parts": {}, "total": None, "have": 0}
        if k.frag_offset + k.frag_len > 65535 or k.frag_offset in d["parts"]:
            return FRAGMENT  # past any datagram's length, or a fragment seen before
        d["parts"][k.frag_offset] = bytes(k.frag_data[:k.frag_len])
        d["have"] += k.frag_len
        if not k.frag_more:
            d["total"] = k.frag_offset + k.frag_len
        total = d["total"]
        if total is None or d["have"] < total:
            return FRAGMENT
        whole = bytearray(total)
        for at, part in d["parts"].items():
            whole[at:at + len(part)] = part[:max(0, total - at)]
        del self.pieces[key]
        self.reassembled = bytes(whole)  # kept alive while the segment is decoded and analysed
        cdef const unsigned char* data = self.reassembled
        cdef unsigned char src[16]
        cdef unsigned char dst[16]
        memcpy(src, k.src, 16)
        memcpy(dst, k.dst, 16)
        return decode_transport(k.frag_proto, data, total, total, src, dst, alen, k, 1)

    cdef Py_ssize_t _syn(self, Py_ssize_t ci, Pkt* k, int* from_server, int* ws) except -1:
        """Port reuse, as Wireshark 4.0 has it (dissect_tcp): a SYN whose sequence number is not its
        side's base starts a new connection on the same ports; a SYN-ACK's moves the base. Both are
        marked reused_ports. A SYN sent again with the same number takes SND.NXT back to the highest
        contiguous sequence (a RST may have moved it)."""
        cdef Conv* c = &self.convs[ci]
        cdef Dir* fwd = &c.d[from_server[0]]
        cdef int alen = 4 if k.family == 4 else 16
        if (k.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK):
            if fwd.base_set and k.seq != fwd.base_seq:
                fwd.base_seq = k.seq
                fwd.seqs.seen = False
                ws[0] |= W_REUSED_PORTS
            return ci
        if not fwd.base_set:
            return ci
        if k.seq == fwd.base_seq:
            fwd.nextseq = fwd.maxseqtobeacked
            return ci
        ni = self._new_conversation(k)
        self.index[bytes(self.last_key[:self.last_keylen])] = ni
        self.last_conv = ni
        c = &self.convs[ni]
        from_server[0] = not (memcmp(k.src, c.caddr, alen) == 0 and k.sport == c.cport)
        ws[0] |= W_REUSED_PORTS
        return ni

    cdef bint _options(self, Dir* fwd, Pkt* k, int* wscale_opt, int* mss_opt, int* mp_ops):
        """A segment's options: window scale (Wireshark takes it from any segment), and on a SYN the MSS,
        SACK permitted and timestamps. True where Wireshark's option dissection throws (tcp_dissect_options
        reading past the captured bytes, a SACK whose blocks do not fit, an MPTCP option without its
        subtype): it then shows none of the segment's analysis flags, and a SYN settles no window scale."""
        cdef int i = 0, kind, olen
        while i < k.optlen:
            kind = k.opts[i]
            if kind == 0:
                i += 1
                continue  # Wireshark reads on after the end of options, to the header's end
            if kind == 1:
                i += 1
                continue
            if i + 1 >= k.optlen:
                return k.opts_cut
            olen = k.opts[i + 1]
            if olen < 2 or i + olen > k.optlen:
                return k.opts_cut and i + 2 <= k.optlen and olen >= 2
            if kind == 5 and (olen - 2) % 8:
                return True
            if kind == 30 and olen < 4:
                return True
            if kind == 30 and (k.opts[i + 2] >> 4) < 8:
                # an MP_CAPABLE or MP_JOIN starts Wireshark's MPTCP analysis (bit 8 here); it then tracks subtypes 0-7
                mp_ops[0] |= (1 << (k.opts[i + 2] >> 4)) | (0x100 if (k.opts[i + 2] >> 4) <= 1 else 0)
            if kind == 3 and olen == 3:
                wscale_opt[0] = k.opts[i + 2] if k.opts[i + 2] <= 14 else 14  # RFC 7323: 14 at most
            elif kind == 2 and olen == 4:
                mss_opt[0] = (k.opts[i + 2] << 8) | k.opts[i + 3]
            elif kind == 4 and k.flags & TH_SYN:
                fwd.sack_ok = True
            elif kind == 8 and k.flags & TH_SYN:
                fwd.timestamps = True
            i += olen
        return k.opts_cut

    cdef void _analyze(self, Py_ssize_t ci, int side, Pkt* k, double ts, int ws):
        cdef Conv* c = &self.convs[ci]
        cdef Dir* fwd = &c.d[side]
        cdef Dir* rev = &c.d[1 - side]
        cdef int flags = k.flags
        cdef unsigned int seq = k.seq, ack = k.ack
        cdef long long seglen = k.plen
        cdef bint syn = (flags & TH_SYN) != 0
        cdef bint has_ack = (flags & TH_ACK) != 0
        cdef bint pure_ack = (flags & (TH_SYN | TH_ACK)) == TH_ACK
        cdef int wscale_opt = -1, mss_opt = -1

        cdef double prev_ts = c.last_ts if c.first_ts != 0 else ts  # the connection's last segment before this one
        cdef double peer_ts = rev.last_ts  # the peer's last segment (0: none yet)
        cdef long long peer_frame = rev.last_frame
        if c.first_ts == 0:
            c.first_ts = ts
        c.last_ts = ts
        fwd.packets += 1
        fwd.payload += seglen
        fwd.last_ts = ts
        fwd.last_frame = self.frames
        cdef bint throws = k.opts_cut
        cdef int mp_ops = 0
        if k.optlen > 0:
            throws = self._options(fwd, k, &wscale_opt, &mss_opt, &mp_ops)
        if syn:
            fwd.syn_seen = True
            if mss_opt > 0:
                fwd.mss = mss_opt

        # The relative numbers start at the SYN's (else at the first seen, less one: Wireshark's).
        if not fwd.base_set:
            fwd.base_seq = seq if syn else seq - 1
            fwd.base_set = True
        if not rev.base_set and has_ack:
            rev.base_seq = ack - 1
            rev.base_set = True
        cdef long long rel_seq = unwrap(&fwd.seqs, seq, fwd.base_seq)
        cdef long long rel_ack = unwrap(&fwd.acks, ack, rev.base_seq) if has_ack else 0

        # What tcplab reads beside Wireshark's flags: SND.NXT before this segment and when it was set,
        # the peer's last acknowledgement.
        cdef unsigned int nxt0 = fwd.nextseq
        cdef double nxt_time0 = fwd.nextseqtime / 1e9
        cdef unsigned int peer_lastack = rev.lastack
        cdef bint peer_acked = rev.acks.seen
        cdef long long peer_window = rev.scaled_window

        ws |= self._wireshark(c, fwd, rev, seq, ack, seglen, flags, k.win, ts)
        if c.mp_ops or mp_ops & 0x100:  # the options are dissected after the analysis, in Wireshark
            c.mp_ops |= mp_ops

        # After the analysis, as in Wireshark: the window scale this SYN settles, the first RTT.
        cdef long long window = k.win
        if not syn and fwd.win_scale >= 0:
            window = window << fwd.win_scale
        if wscale_opt >= 0:
            fwd.win_scale = wscale_opt
        if syn and not throws:
            # verify_tcp_window_scaling: both SYNs must offer it, or neither side scales
            if fwd.win_scale == -1:
                fwd.win_scale = -2
                rev.win_scale = -2
            elif has_ack and rev.win_scale == -2:
                fwd.win_scale = -2
        if syn:
            fwd.is_first_ack = True
        if (flags & (TH_SYN | TH_ACK)) == TH_SYN:
            c.syn_time = self.now_ns
        elif pure_ack:
            if c.syn_time != 0 and c.first_rtt == 0:
                c.first_rtt = self.now_ns - c.syn_time
            fwd.is_first_ack = False

        # tcplab's labels
        cdef long long labels = 0
        if syn and not has_ack:
            labels |= L_SYN
        if syn and has_ack:
            labels |= L_SYN_ACK
        if flags & TH_RST:
            labels |= L_RST
            ws |= W_RESET
        if flags & TH_FIN:
            labels |= L_FIN
        if ws & W_KEEP_ALIVE:
            # Linux probes a zero window with the keepalive's form (a 0-byte segment at SND.NXT - 1):
            # Wireshark calls both keep-alive; the peer's last window tells them apart.
            labels |= L_ZERO_WINDOW_PROBE if peer_window == 0 else L_KEEPALIVE
        if ws & W_ZERO_WINDOW_PROBE:
            labels |= L_ZERO_WINDOW_PROBE | L_RFC_ZERO_WINDOW_PROBE
        if ws & W_ZERO_WINDOW_PROBE_ACK:
            labels |= L_ZERO_WINDOW_PROBE_ACK
        elif ws & W_KEEP_ALIVE_ACK:
            labels |= L_KEEPALIVE_ACK
        elif (seglen == 0 and not (flags & (TH_SYN | TH_FIN | TH_RST)) and rev.lastflags & W_KEEP_ALIVE
                and window == 0 and seq == fwd.nextseq):
            labels |= L_ZERO_WINDOW_PROBE_ACK  # the answer to Linux's zero-window probe: still closed
        if ws & W_ZERO_WINDOW:
            labels |= L_ZERO_WINDOW
        if ws & W_WINDOW_UPDATE:
            labels |= L_WINDOW_UPDATE
        if ws & W_WINDOW_FULL:
            labels |= L_WINDOW_FULL
        if ws & (W_RETRANSMISSION | W_FAST_RETRANSMISSION | W_SPURIOUS_RETRANSMISSION):
            labels |= L_RETRANSMISSION
        if ws & W_FAST_RETRANSMISSION:
            labels |= L_FAST_RETRANSMISSION
        if ws & W_OUT_OF_ORDER:
            labels |= L_OUT_OF_ORDER
        if seglen > 0 and not (ws & (W_KEEP_ALIVE | W_ZERO_WINDOW_PROBE)):
            labels |= L_DATA
        if (has_ack and seglen == 0 and not (flags & (TH_SYN | TH_FIN | TH_RST))
                and not (labels & (L_KEEPALIVE | L_ZERO_WINDOW_PROBE | L_KEEPALIVE_ACK | L_ZERO_WINDOW_PROBE_ACK | L_WINDOW_UPDATE))):
            labels |= L_ACK
        if not (flags & TH_RST):
            fwd.scaled_window = window

        cdef Py_ssize_t r
        if self.frame_flags:
            r = self.frame_rows
            self.f_index[r] = self.frames
            # what tshark shows: nothing of the analysis where its option dissection threw
            self.f_ws[r] = 0 if k.bogus else (ws & W_RESET) if throws else ws
            self.frame_rows += 1
        if self.keep_all or ws & ~W_DUPLICATE_ACK or labels & (L_SYN | L_SYN_ACK | L_FIN | L_RST):
            r = self.rows
            self.o_index[r] = self.frames
            self.o_ts[r] = ts
            self.o_conv[r] = ci
            self.o_from_server[r] = side
            self.o_seq[r] = seq
            self.o_ack[r] = ack
            self.o_flags[r] = flags
            self.o_win[r] = k.win
            self.o_window[r] = window
            self.o_plen[r] = seglen
            self.o_rel_seq[r] = rel_seq
            self.o_rel_ack[r] = rel_ack
            self.o_labels[r] = labels
            self.o_ws[r] = ws
            self.o_wscale[r] = wscale_opt
            self.o_mss[r] = mss_opt
            self.o_nxt_before[r] = rel_seq + <int>(nxt0 - seq) if nxt0 != 0 else 0
            self.o_nxt_time[r] = nxt_time0
            self.o_peer_ack[r] = rel_seq + <int>(peer_lastack - seq) if peer_acked else -1
            self.o_prev_ts[r] = prev_ts
            self.o_peer_ts[r] = peer_ts
            self.o_peer_frame[r] = peer_frame
            self.rows += 1

    cdef int _wireshark(self, Conv* c, Dir* fwd, Dir* rev, unsigned int seq, unsigned int ack, long long seglen,
                        int flags, long long window, double ts) noexcept:
        """Wireshark's tcp_analyze_sequence_number (epan/dissectors/packet-tcp.c, 4.0.17), condition for
        condition: the flags of one segment, and its side's state after it. `window` is the raw field."""
        cdef int f = 0
        cdef unsigned int nextseq
        cdef bint seq_not_advanced, bare
        cdef unsigned long long reorder
        cdef bint done = False
        cdef bint plain = not (flags & (TH_SYN | TH_FIN | TH_RST))
        # ZERO WINDOW PROBE: one byte at the next sequence number into a closed window.
        if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
            f |= W_ZERO_WINDOW_PROBE
            done = True
        if not done:
            if window == 0 and plain:
                f |= W_ZERO_WINDOW
            # LOST SEGMENT: beyond the next expected sequence number.
            if fwd.nextseq and gt_seq(seq, fwd.nextseq) and not (flags & TH_RST):
                f |= W_LOST_SEGMENT
            # KEEP ALIVE: 0 or 1 byte, one byte before the next expected sequence number.
            if (seglen == 0 or seglen == 1) and seq == <unsigned int>(fwd.nextseq - 1) and plain:
                f |= W_KEEP_ALIVE
            bare = seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and plain
            # WINDOW UPDATE: nothing but a new window.
            if bare and window != 0 and window != fwd.window:
                f |= W_WINDOW_UPDATE
            # WINDOW FULL: data up to the edge of the window the peer offered (its scale known).
            if (seglen > 0 and rev.win_scale != -1 and plain
                    and <unsigned int>(seq + seglen) == <unsigned int>(rev.lastack + (rev.window << (
                        0 if (rev.is_first_ack or rev.win_scale == -2) else rev.win_scale)))):
                f |= W_WINDOW_FULL
            if bare and window != 0 and window == fwd.window and (rev.lastflags & W_KEEP_ALIVE):
                f |= W_KEEP_ALIVE_ACK
            elif bare and window == 0 and window == fwd.window and (rev.lastflags & W_ZERO_WINDOW_PROBE):
                f |= W_ZERO_WINDOW_PROBE_ACK
            elif bare and window != 0 and window == fwd.window and (c.mp_ops == 0 or c.mp_ops == fwd.mp_snap):
                # (MPTCP: a duplicate ACK is tolerated when new MPTCP operations came since, RFC 8684 4)
                fwd.dupacknum = 1 if fwd.dupacknum == -1 else fwd.dupacknum + 1
                f |= W_DUPLICATE_ACK
                fwd.dupacks += 1
        # A new acknowledgement ends a run of duplicates.
        if ack != fwd.lastack:
            fwd.dupacknum = 0

        # ACKED LOST SEGMENT: acknowledges what was never seen going the other way.
        if rev.maxseqtobeacked and gt_seq(ack, rev.maxseqtobeacked) and (flags & TH_ACK):
            if lt_seq(rev.maxseqtobeacked, rev.nextseq):
                rev.maxseqtobeacked = rev.nextseq
                f |= W_ACK_LOST_SEGMENT
            else:
                # the other side sends nothing but ACKs: flag the hole once, not on every ACK
                if rev.dupacknum == 0:
                    f |= W_ACK_LOST_SEGMENT
                rev.dupacknum = -1

        # RETRANSMISSION, FAST RETRANSMISSION, SPURIOUS RETRANSMISSION, OUT OF ORDER
        if (seglen > 0 or flags & (TH_SYN | TH_FIN)) and not (f & W_KEEP_ALIVE):
            seq_not_advanced = fwd.nextseq != 0 and lt_seq(seq, fwd.nextseq)
            # one byte back with more behind it: new data after a zero-window probe's byte
            if seglen > 1 and <unsigned int>(fwd.nextseq - 1) == seq:
                seq_not_advanced = False
            reorder = <unsigned long long>c.first_rtt if c.first_rtt != 0 else DEFAULT_REORDER_WINDOW
            if seglen > 0 and rev.lastack and le_seq(<unsigned int>(seq + seglen), rev.lastack):
                f |= W_SPURIOUS_RETRANSMISSION | W_RETRANSMISSION
            elif (seq_not_advanced and (rev.dupacknum >= 2 or rev.dupacknum == -1) and rev.lastack == seq
                    and <unsigned long long>(self.now_ns - rev.lastacktime) < FAST_RETRANSMIT_WITHIN):
                f |= W_FAST_RETRANSMISSION | W_RETRANSMISSION
            elif (seq_not_advanced and <unsigned long long>(self.now_ns - fwd.nextseqtime) < reorder
                    and fwd.nextseq != <unsigned int>(seq + seglen + (1 if flags & (TH_SYN | TH_FIN) else 0))):
                f |= W_OUT_OF_ORDER
            elif seq_not_advanced:
                f |= W_RETRANSMISSION

        nextseq = seq + seglen
        if flags & (TH_SYN | TH_FIN):
            nextseq += 1
        # The highest sequence number so far (a zero-window probe's byte does not count).
        if (gt_seq(nextseq, fwd.nextseq) or not fwd.nextseq) and not (f & W_ZERO_WINDOW_PROBE):
            fwd.nextseq = nextseq
            fwd.nextseqtime = self.now_ns
        # The highest contiguous sequence number, for acknowledgements of segments never seen.
        if (seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked) and not (f & W_ZERO_WINDOW_PROBE):
            fwd.maxseqtobeacked = fwd.nextseq
        fwd.window = window
        fwd.lastack = ack
        fwd.lastacktime = self.now_ns
        fwd.lastflags = f
        if c.mp_ops:
            fwd.mp_snap = c.mp_ops
        return f


def format_frames(const long long[::1] frames, const long long[::1] ws) -> bytes:
    """One line per frame, `frame<TAB>flag,flag`, Wireshark's flag names (WS_FLAGS): the analyzer's
    label per frame, written as fast as it is computed (a Python loop would take longer than the analysis)."""
    cdef Py_ssize_t n = frames.shape[0], i, j, k, at = 0
    cdef list names = [flag.encode() for flag in WS_FLAGS]
    cdef int nflags = len(names)
    cdef long long v, w
    cdef char digits[24]
    cdef bint first
    # the longest line: 20 digits, a tab, every name with a comma, a newline
    cdef Py_ssize_t longest = 22 + sum(len(x) + 1 for x in names)
    out = bytearray(n * 24 + 64)
    cdef unsigned char* o = out
    cdef const unsigned char* name
    cdef Py_ssize_t cap = len(out)
    for i in range(n):
        if at + longest > cap:
            out.extend(bytes(cap))
            cap = len(out)
            o = out
        v = frames[i]
        k = 0
        while True:
            digits[k] = 48 + v % 10
            k += 1
            v //= 10
            if v == 0:
                break
        while k:
            k -= 1
            o[at] = digits[k]
            at += 1
        o[at] = 9
        at += 1
        w = ws[i]
        first = True
        for j in range(nflags):
            if w & (1 << j):
                if not first:
                    o[at] = 44
                    at += 1
                first = False
                name = names[j]
                for k in range(len(names[j])):
                    o[at] = name[k]
                    at += 1
        o[at] = 10
        at += 1
    return bytes(out[:at])

# Packet decoding for lab/analysis/tcpscan.pyx: from a record's bytes and its link type down to the TCP
# header, through what captures from the real world carry (VLAN and QinQ tags, MPLS, PPPoE, Linux cooked
# headers, raw IP, IPv6 extension headers, IP-in-IP, GRE with Ethernet, ERSPAN or Aruba's 802.11 inside,
# VXLAN). Included by tcpscan.pyx, not a module of its own: these are C functions called once a packet.

from libc.string cimport memcpy, memset

cdef enum:
    LINK_NULL = 0
    LINK_ETHERNET = 1
    LINK_PPP = 9
    LINK_RAW_OLD = 12
    LINK_RAW_OLD2 = 14
    LINK_PPP_HDLC = 50
    LINK_PPP_ETHER = 51
    LINK_RAW = 101
    LINK_C_HDLC = 104
    LINK_IEEE802_11 = 105
    LINK_LOOP = 108
    LINK_SLL = 113
    LINK_PFLOG = 117
    LINK_PRISM = 119
    LINK_RADIOTAP = 127
    LINK_AVS = 163
    LINK_PPI = 192
    LINK_PPP_WITH_DIR = 204
    LINK_IPV4 = 228
    LINK_IPV6 = 229
    LINK_NFLOG = 239
    LINK_SLL2 = 276

# Why a record gave no TCP segment (counted per file, printed by `invoke analyze`).
cdef enum:
    OK_TCP = 1
    NOT_IP = 0            # ARP, LLDP, STP...: not IP at all
    NOT_TCP = -1          # IP, but UDP, ICMP... (tunnels already opened)
    CUT_SHORT = -2        # the snaplen cut the headers before the TCP header's 20 bytes
    FRAGMENT = -3         # an IP fragment, reassembled by the scanner (only one that never completes stays skipped)
    BAD_HEADER = -7       # a TCP header shorter than 20 bytes, or longer than its IP packet: Wireshark analyses neither
    V6_NO_LENGTH = -8     # IPv6 payload length 0 without a jumbo option: Wireshark 4.0 does not read on
    BAD_IP_OPTION = -9    # an IPv4 option Wireshark's dissector throws on: it reads no TCP after it
    QUOTED = 3            # a TCP header in an ICMP error (decode returned it with k.quoted)
    SHORT_SEGMENT = 4     # a TCP header longer than its IP packet says: Wireshark shows its flags, analyses nothing
    PIECE = 2             # an IP fragment: its part of the datagram is in the Pkt's frag fields
    LINK_UNREAD = -4      # a link type this reader does not know
    PROTECTED = -5        # encrypted 802.11, or a tunnel this reader does not open
    TOO_DEEP = -6         # tunnels nested deeper than MAX_DEPTH

SKIP_REASONS = {
    NOT_IP: "not IP", NOT_TCP: "IP but not TCP", CUT_SHORT: "headers cut short by the snaplen",
    FRAGMENT: "IP fragments (a datagram is read at the fragment that completes it)", LINK_UNREAD: "a link type not read",
    BAD_HEADER: "TCP headers shorter than 20 bytes and longer than their IP packet",
    V6_NO_LENGTH: "IPv6 packets of payload length 0 (offload; Wireshark 4.0 does not read them)",
    BAD_IP_OPTION: "IPv4 options too short for their kind",
    QUOTED: "TCP headers quoted in ICMP errors (their RST flag shown, not analysed)",
    SHORT_SEGMENT: "TCP headers longer than their IP packet (their RST flag shown, not analysed)",
    PROTECTED: "encrypted or unknown tunnel payload", TOO_DEEP: "tunnels nested too deep",
}

cdef enum:
    MAX_DEPTH = 6
    VXLAN_PORT = 4789
    GENEVE_PORT = 6081
    GTPU_PORT = 2152
    TEREDO_PORT = 3544
    GRE_UDP_PORT = 4754
    L2TP_PORT = 1701
    AYIYA_PORT = 5072

cdef struct Pkt:
    int family                # 4 or 6
    unsigned char src[16]
    unsigned char dst[16]
    int sport, dport
    unsigned int seq, ack
    int flags, win
    long long plen            # payload length from the IP header: a short snaplen does not hide data
    const unsigned char* opts # the TCP options, within the captured bytes
    int optlen
    bint opts_cut             # the capture ends inside the TCP header: Wireshark's option parsing throws
    bint bogus                # a TCP header length under 20: analysed, nothing shown
    bint quoted               # a TCP header quoted in an ICMP error: no analysis, only its flags shown
    const unsigned char* frame  # the record's first byte, and its length on the wire (the reported length)
    Py_ssize_t wire
    # an IP fragment (decode returned PIECE): which datagram, where its bytes go, whether more follow
    unsigned int frag_id
    long long frag_offset
    bint frag_more
    int frag_proto
    const unsigned char* frag_data
    Py_ssize_t frag_len

cdef inline unsigned int be16(const unsigned char* p) noexcept nogil:
    return (p[0] << 8) | p[1]

cdef inline unsigned int be32(const unsigned char* p) noexcept nogil:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | (<unsigned int>p[2] << 8) | p[3]


cdef int decode_tcp(const unsigned char* p, Py_ssize_t n, long long ip_payload, Pkt* k) noexcept nogil:
    if n < 20:
        return CUT_SHORT
    cdef int thl = (p[12] >> 4) * 4
    if ip_payload < thl:  # Wireshark's "short segment": no analysis; the flags shown, unless the length is bogus too
        k.flags = p[13]
        return SHORT_SEGMENT if thl >= 20 else BAD_HEADER
    # A header length under 20 is bogus: Wireshark has analysed the segment by then (its length taken
    # from that header length), and gives up before it shows any flag.
    k.bogus = thl < 20
    k.sport = be16(p)
    k.dport = be16(p + 2)
    k.seq = be32(p + 4)
    k.ack = be32(p + 8)
    k.flags = p[13]
    k.win = be16(p + 14)
    k.plen = ip_payload - thl if ip_payload >= thl else 0
    k.opts_cut = thl > n
    if thl > 20:
        k.opts = p + 20
        k.optlen = (thl if thl <= n else <int>n) - 20
    else:
        k.opts = NULL
        k.optlen = 0
    return OK_TCP


cdef inline Py_ssize_t reported(const unsigned char* p, Pkt* k) noexcept nogil:
    """The bytes the wire carried from p to the end of the frame (a snaplen cuts what was captured, not this)."""
    return k.wire - (p - k.frame)


cdef bint ipv4_options_throw(const unsigned char* p, Py_ssize_t length) noexcept nogil:
    """Wireshark's IPv4 option dissectors read past an option shorter than its kind's fixed part, and the
    exception ends the packet's dissection before TCP (packet-ip.c): record route and the source
    routes need a pointer byte, the timestamp option a pointer and flags byte."""
    cdef Py_ssize_t i = 0
    cdef int kind, olen
    while i < length:
        kind = p[i]
        if kind == 0:
            return False
        if kind == 1:
            i += 1
            continue
        if i + 1 >= length:
            return False
        olen = p[i + 1]
        if olen < 2 or olen - 2 > length - i - 2:
            return False  # Wireshark stops reading the options there, and goes on
        if (kind == 7 or kind == 131 or kind == 137) and olen < 3:
            return True
        if kind == 68 and olen < 4:
            return True
        i += olen
    return False


cdef int decode_ipv4(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 20 or (p[0] >> 4) != 4:
        return CUT_SHORT if n < 20 else NOT_IP
    cdef int ihl = (p[0] & 0x0F) * 4
    cdef long long total = be16(p + 2)
    if ihl < 20 or n < ihl:
        return CUT_SHORT
    cdef Py_ssize_t rep = reported(p, k)
    if total == 0:  # TCP segmentation offload: the sender's capture leaves the length to the NIC (the wire's length, as Wireshark)
        total = rep
    elif total > rep:  # longer than the frame: Wireshark keeps the frame's length
        total = rep
    if ihl > 20 and ipv4_options_throw(p + 20, ihl - 20):
        return BAD_IP_OPTION
    k.family = 4
    cdef unsigned int frag = be16(p + 6)
    if frag & 0x3FFF:  # more fragments, or not the first: a piece of a datagram the scanner reassembles
        memset(k.src, 0, 16)
        memset(k.dst, 0, 16)
        memcpy(k.src, p + 12, 4)
        memcpy(k.dst, p + 16, 4)
        k.frag_id = be16(p + 4)
        k.frag_offset = (frag & 0x1FFF) * 8
        k.frag_more = (frag & 0x2000) != 0
        k.frag_proto = p[9]
        k.frag_data = p + ihl
        if total > n:  # Wireshark reassembles only fragments captured whole
            return FRAGMENT
        k.frag_len = total - ihl
        if k.frag_len < 0:
            return CUT_SHORT
        return PIECE
    return decode_transport(p[9], p + ihl, n - ihl, total - ihl, p + 12, p + 16, 4, k, depth)


cdef int decode_ipv6(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 40:
        return CUT_SHORT
    if (p[0] >> 4) != 6:
        return NOT_IP
    cdef long long payload = be16(p + 4)
    cdef int nh = p[6]
    cdef Py_ssize_t off = 40, hl, rep = reported(p, k)
    if payload == 0:
        payload = jumbo_length(p, n) if nh == 0 else -1
        if payload < 0:
            return V6_NO_LENGTH
    if payload > rep - 40:
        payload = rep - 40
    # Extension headers: hop-by-hop, routing, destination options, mobility, HIP, shim6 (length in
    # 8-byte units after the first 8), fragment (8 bytes), AH (4-byte units, plus 2).
    while nh in (0, 43, 60, 135, 139, 140, 44, 51):
        if off + 8 > n:
            return CUT_SHORT
        if nh == 44:
            if be16(p + off + 2) & 0xFFF9:  # an offset, or more to come: a piece (an atomic fragment is none)
                k.family = 6
                memcpy(k.src, p + 8, 16)
                memcpy(k.dst, p + 24, 16)
                k.frag_id = be32(p + off + 4)
                k.frag_offset = be16(p + off + 2) & 0xFFF8
                k.frag_more = (p[off + 3] & 1) != 0
                k.frag_proto = p[off]
                k.frag_data = p + off + 8
                if off + payload > n:  # not captured whole: Wireshark reassembles no such fragment
                    return FRAGMENT
                k.frag_len = payload - 8
                if k.frag_len < 0 or k.frag_len > 65535:
                    return CUT_SHORT
                return PIECE
            hl = 8
        elif nh == 51:
            hl = (p[off + 1] + 2) * 4
        else:
            hl = (p[off + 1] + 1) * 8
        nh = p[off]
        off += hl
        payload -= hl
    if off > n:
        return CUT_SHORT
    return decode_transport(nh, p + off, n - off, payload, p + 8, p + 24, 16, k, depth)


cdef long long jumbo_length(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """A jumbogram's payload length, from the hop-by-hop header's jumbo option (RFC 2675); -1 if none."""
    if n < 48:
        return -1
    cdef Py_ssize_t end = 40 + (p[41] + 1) * 8, i = 42
    if end > n:
        return -1
    while i + 2 <= end:
        if p[i] == 0:  # Pad1
            i += 1
            continue
        if p[i] == 0xC2 and p[i + 1] == 4 and i + 6 <= end:
            return be32(p + i + 2)
        i += 2 + p[i + 1]
    return -1


cdef int decode_transport(int proto, const unsigned char* p, Py_ssize_t n, long long payload,
                          const unsigned char* src, const unsigned char* dst, int alen, Pkt* k, int depth) noexcept nogil:
    if proto == 6:
        memset(k.src, 0, 16)
        memset(k.dst, 0, 16)
        memcpy(k.src, src, alen)
        memcpy(k.dst, dst, alen)
        k.family = 4 if alen == 4 else 6
        return decode_tcp(p, n, payload, k)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if proto == 4:
        return decode_ipv4(p, n, k, depth + 1)
    if proto == 41:
        return decode_ipv6(p, n, k, depth + 1)
    if proto == 47:
        return decode_gre(p, n, k, depth + 1)
    if proto == 17 and n >= 8:
        return decode_udp_tunnel(p, n, k, depth + 1)
    if (proto == 1 and n >= 8 and p[0] in (3, 4, 5, 11, 12)) or (proto == 58 and n >= 8 and 1 <= p[0] <= 4):
        return decode_quoted(p + 8, n - 8, k, depth + 1)
    return NOT_TCP


cdef int decode_quoted(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    """The IP header and the first bytes of TCP an ICMP error quotes: Wireshark shows that TCP header's
    flags (its RST among them) and analyses nothing of it."""
    cdef Py_ssize_t ihl
    cdef int proto
    if n >= 20 and (p[0] >> 4) == 4:
        ihl = (p[0] & 0x0F) * 4
        proto = p[9]
    elif n >= 40 and (p[0] >> 4) == 6:
        ihl = 40
        proto = p[6]
    else:
        return NOT_TCP
    if proto != 6 or n < ihl + 14:
        return NOT_TCP
    k.flags = p[ihl + 13]
    k.quoted = True
    return QUOTED


cdef int decode_udp_tunnel(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    """The UDP tunnels Wireshark opens by their port: VXLAN, Geneve, GTP-U, Teredo, GRE-in-UDP."""
    cdef unsigned int sport = be16(p), dport = be16(p + 2)
    cdef Py_ssize_t off
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if dport == VXLAN_PORT and n >= 16 and (p[8] & 0x08):
        return decode_ethernet(p + 16, n - 16, k, depth)
    if dport == GENEVE_PORT and n >= 16:
        off = 8 + 8 + (p[8] & 0x3F) * 4  # UDP, the 8-byte header, its options
        if off > n:
            return CUT_SHORT
        return decode_ethertype(be16(p + 10), p + off, n - off, k, depth)
    if (dport == GTPU_PORT or sport == GTPU_PORT) and n >= 16 and (p[8] >> 5) == 1 and p[9] == 0xFF:
        off = 16
        if p[8] & 0x07:  # sequence number, N-PDU, extension headers follow
            off = 20
            if p[8] & 0x04:
                while off <= n and p[off - 1] != 0:  # each extension header: length in 4-byte units, then the next type
                    if off >= n or p[off] == 0:
                        return CUT_SHORT
                    off += p[off] * 4
        if off > n:
            return CUT_SHORT
        return decode_ip_by_version(p + off, n - off, k, depth)
    if (dport == TEREDO_PORT or sport == TEREDO_PORT) and n >= 48:
        off = 8
        if be16(p + off) == 1 and n >= off + 13:  # an authentication indicator
            off += 13 + p[off + 2] + p[off + 3]
        if off + 8 <= n and be16(p + off) == 0:  # an origin indication
            off += 8
        if off + 40 <= n and (p[off] >> 4) == 6:
            return decode_ipv6(p + off, n - off, k, depth)
        return NOT_TCP
    if dport == GRE_UDP_PORT:
        return decode_gre(p + 8, n - 8, k, depth)
    if (dport == L2TP_PORT or sport == L2TP_PORT) and n >= 8 + 6:
        return decode_l2tp(p + 8, n - 8, k, depth)
    if (dport == AYIYA_PORT or sport == AYIYA_PORT) and n >= 8 + 8:
        off = 8 + 8 + (1 << (p[8] >> 4)) + (p[9] >> 4) * 4  # the identity's and the signature's lengths
        if (p[10] & 0x0F) != 1 or off > n:  # only "forward" carries a packet
            return NOT_TCP
        if p[11] == 4:
            return decode_ipv4(p + off, n - off, k, depth)
        if p[11] == 41:
            return decode_ipv6(p + off, n - off, k, depth)
        return NOT_TCP
    return NOT_TCP


cdef int decode_l2tp(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    """An L2TPv2 data message (RFC 2661): its optional length, the tunnel and session, optional
    sequence numbers and offset, then PPP in HDLC-like framing."""
    cdef unsigned int control = be16(p)
    cdef Py_ssize_t off = 2
    if (control & 0x0F) != 2 or control & 0x8000:  # not version 2, or a control message
        return NOT_TCP
    if control & 0x4000:
        off += 2
    off += 4  # tunnel and session ids
    if control & 0x0800:
        off += 4
    if control & 0x0200:
        if off + 2 > n:
            return CUT_SHORT
        off += 2 + be16(p + off)
    if off + 2 > n:
        return CUT_SHORT
    p += off
    n -= off
    if n >= 2 and p[0] == 0xFF and p[1] == 0x03:
        p += 2
        n -= 2
    if n < 2:
        return CUT_SHORT
    if p[0] & 1:
        return decode_ppp_protocol(p[0], p + 1, n - 1, k, depth)
    return decode_ppp_protocol(be16(p), p + 2, n - 2, k, depth)


cdef int decode_gre(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 4:
        return CUT_SHORT
    cdef int fl = p[0], version = p[1] & 7
    cdef unsigned int proto = be16(p + 2)
    if proto == 0x88BE and not (fl & 0x10):  # ERSPAN type I: no sequence number, and no ERSPAN header
        if n < 4 + 14:
            return CUT_SHORT
        return decode_ethernet(p + 4, n - 4, k, depth + 1)
    cdef Py_ssize_t off = 4
    if fl & 0x80 or fl & 0x40:  # checksum (and, with routing, its offset)
        off += 4
    if fl & 0x20:  # key (PPTP's call id and payload length in version 1)
        off += 4
    if fl & 0x10:  # sequence number
        off += 4
    if version == 1 and p[1] & 0x80:  # PPTP's acknowledgement number
        off += 4
    if off > n:
        return CUT_SHORT
    return decode_ethertype(proto, p + off, n - off, k, depth)


cdef int decode_ethertype(unsigned int etype, const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    # 802.1Q, 802.1ad (QinQ) and the older 0x9100 tags, as many as there are, wherever an ethertype is
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if n < 4:
            return CUT_SHORT
        etype = be16(p + 2)
        p += 4
        n -= 4
    if etype == 0x0800:
        return decode_ipv4(p, n, k, depth)
    if etype == 0x86DD:
        return decode_ipv6(p, n, k, depth)
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if etype == 0x6558:  # transparent Ethernet bridging (GRE, NVGRE)
        return decode_ethernet(p, n, k, depth + 1)
    if etype == 0x88BE:  # ERSPAN type II: an 8-byte header (version 1), then the mirrored frame
        if n < 8:
            return CUT_SHORT
        return decode_ethernet(p + 8, n - 8, k, depth + 1) if (p[0] >> 4) == 1 else NOT_IP
    if etype == 0x22EB:  # ERSPAN type III: 12 bytes (version 2), 8 more with the O bit
        if n < 12:
            return CUT_SHORT
        if (p[0] >> 4) != 2:  # Wireshark decodes no other version
            return NOT_IP
        return decode_ethernet(p + (20 if p[11] & 1 else 12), n - (20 if p[11] & 1 else 12), k, depth + 1)
    if etype == 0x8200 or etype == 0x8210:  # Aruba's WLAN tunnel: an 802.11 frame
        return decode_80211(p, n, k, depth + 1)
    if etype == 0x8847 or etype == 0x8848:
        return decode_mpls(p, n, k, depth + 1)
    if etype == 0x8864:  # PPPoE session: 6 bytes, then PPP's protocol
        if n < 8:
            return CUT_SHORT
        return decode_ppp_protocol(be16(p + 6), p + 8, n - 8, k, depth)
    if etype == 0x880B:  # PPP in GRE (PPTP): address and control bytes may be there
        if n >= 2 and p[0] == 0xFF and p[1] == 0x03:
            p += 2
            n -= 2
        if n < 2:
            return CUT_SHORT
        if p[0] & 1:  # a one-byte protocol field (protocol field compression)
            return decode_ppp_protocol(p[0], p + 1, n - 1, k, depth)
        return decode_ppp_protocol(be16(p), p + 2, n - 2, k, depth)
    return NOT_IP


cdef int decode_ppp_protocol(unsigned int proto, const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if proto == 0x21:
        return decode_ipv4(p, n, k, depth)
    if proto == 0x57:
        return decode_ipv6(p, n, k, depth)
    return NOT_IP


cdef int decode_mpls(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    # Labels until the bottom of the stack, then IP told apart by its version nibble.
    while True:
        if n < 4:
            return CUT_SHORT
        bottom = p[2] & 1
        p += 4
        n -= 4
        if bottom:
            break
    if n >= 14 and (p[0] >> 4) == 0:
        # A pseudowire's Ethernet frame. Wireshark takes it as without a control word when both MAC
        # addresses are of known vendors, else as with one (4 bytes first); here a first word of zero
        # flags, or a locally administered destination (no vendor's), stands for "with".
        if be16(p) == 0 or p[0] & 0x02:  # a control word's zero flags, or no vendor's address
            return decode_ethernet(p + 4, n - 4, k, depth) if n >= 18 else CUT_SHORT
        return decode_ethernet(p, n, k, depth)
    return decode_ip_by_version(p, n, k, depth)


cdef int decode_ip_by_version(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 1:
        return CUT_SHORT
    if (p[0] >> 4) == 4:
        return decode_ipv4(p, n, k, depth)
    if (p[0] >> 4) == 6:
        return decode_ipv6(p, n, k, depth)
    return NOT_IP


cdef int decode_ethernet(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 14:
        return CUT_SHORT
    cdef unsigned int etype = be16(p + 12)
    cdef Py_ssize_t off = 14
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:  # tags before an 802.3 length are read here
        if off + 4 > n:
            return CUT_SHORT
        etype = be16(p + off + 2)
        off += 4
    if etype <= 1500:  # an 802.3 length: LLC, with IP only behind SNAP
        if off + 8 <= n and p[off] == 0xAA and p[off + 1] == 0xAA and p[off + 2] == 0x03:
            return decode_ethertype(be16(p + off + 6), p + off + 8, n - off - 8, k, depth)
        return NOT_IP
    return decode_ethertype(etype, p + off, n - off, k, depth)


cdef int decode_80211(const unsigned char* p, Py_ssize_t n, Pkt* k, int depth) noexcept nogil:
    if n < 24:
        return CUT_SHORT
    cdef Py_ssize_t hl = 24 + (6 if (p[1] & 3) == 3 else 0) + (2 if p[0] & 0x80 else 0) + (4 if (p[0] & 0x80 and p[1] & 0x80) else 0)
    return decode_80211_body(p, n, k, hl, hl)


cdef int decode_80211_body(const unsigned char* p, Py_ssize_t n, Pkt* k, Py_ssize_t hl, Py_ssize_t off) noexcept nogil:
    """An 802.11 data frame whose header is `hl` bytes and whose body starts at `off` (radiotap may pad
    between): LLC/SNAP, then the ethertype; an A-MSDU's first subframe has its own addresses first."""
    cdef int fc0 = p[0], fc1 = p[1]
    if ((fc0 >> 2) & 3) != 2:  # not a data frame
        return NOT_IP
    if fc1 & 0x40:  # protected: encrypted
        return PROTECTED
    if fc0 & 0x40:  # a null-data subtype: no body
        return NOT_IP
    if fc0 & 0x80 and hl >= 26 and (p[hl - (6 if fc1 & 0x80 else 2)] & 0x80):  # the QoS control's A-MSDU bit
        off += 14  # the first subframe: destination, source, length
    if off + 8 > n:
        return CUT_SHORT
    if p[off] == 0xAA and p[off + 1] == 0xAA and p[off + 2] == 0x03:
        return decode_ethertype(be16(p + off + 6), p + off + 8, n - off - 8, k, 1)
    return NOT_IP


cdef bint radiotap_padded(const unsigned char* p, Py_ssize_t hlen) noexcept nogil:
    """The radiotap flags field's "data pad" bit: the 802.11 header is padded to 4 bytes."""
    cdef Py_ssize_t off = 4
    cdef unsigned int present
    if hlen < 8:
        return False
    present = p[4] | (p[5] << 8) | (p[6] << 16) | (<unsigned int>p[7] << 24)
    while True:  # the present words chain on while bit 31 is set
        if off + 4 > hlen:
            return False
        if not (p[off + 3] & 0x80):
            off += 4
            break
        off += 4
    if not (present & 2):  # no flags field
        return False
    if present & 1:  # TSFT first: 8 bytes, aligned on 8
        off = (off + 7) & ~7
        off += 8
    return off < hlen and (p[off] & 0x20) != 0


cdef int decode_80211_padded(const unsigned char* p, Py_ssize_t n, Pkt* k, bint padded) noexcept nogil:
    """An 802.11 frame whose header radiotap padded to a multiple of 4 bytes."""
    cdef Py_ssize_t hl
    if not padded or n < 24:
        return decode_80211(p, n, k, 0)
    # the same frame as decode_80211 reads it, once the pad after the header is taken out
    hl = 24 + (6 if (p[1] & 3) == 3 else 0) + (2 if p[0] & 0x80 else 0) + (4 if (p[0] & 0x80 and p[1] & 0x80) else 0)
    if hl % 4 == 0 or hl + (4 - hl % 4) > n:
        return decode_80211(p, n, k, 0)
    return decode_80211_body(p, n, k, hl, hl + (4 - hl % 4))


cdef int decode_nflog(const unsigned char* p, Py_ssize_t n, Pkt* k) noexcept nogil:
    if n < 4:
        return CUT_SHORT
    cdef Py_ssize_t off = 4, length
    cdef unsigned int kind
    while off + 4 <= n:
        length = p[off] | (p[off + 1] << 8)
        kind = p[off + 2] | (p[off + 3] << 8)
        if length < 4:
            return CUT_SHORT
        if kind == 9:  # NFULA_PAYLOAD: the packet from its IP header
            return decode_ip_by_version(p + off + 4, min(length - 4, n - off - 4), k, 0)
        off += (length + 3) & ~3
    return NOT_IP


cdef int decode_link(int link, const unsigned char* p, Py_ssize_t n, Pkt* k) noexcept nogil:
    cdef unsigned int family
    if link == LINK_ETHERNET:
        return decode_ethernet(p, n, k, 0)
    if link == LINK_RAW or link == LINK_RAW_OLD or link == LINK_RAW_OLD2:
        return decode_ip_by_version(p, n, k, 0)
    if link == LINK_IPV4:
        return decode_ipv4(p, n, k, 0)
    if link == LINK_IPV6:
        return decode_ipv6(p, n, k, 0)
    if link == LINK_SLL:
        if n < 16:
            return CUT_SHORT
        return decode_ethertype(be16(p + 14), p + 16, n - 16, k, 0)
    if link == LINK_SLL2:
        if n < 20:
            return CUT_SHORT
        return decode_ethertype(be16(p), p + 20, n - 20, k, 0)
    if link == LINK_NULL or link == LINK_LOOP:
        # A 4-byte address family, in the capturing machine's byte order (NULL) or network order
        # (LOOP): AF_INET is 2 everywhere, AF_INET6 is 10, 24, 28 or 30 depending on the system.
        if n < 4:
            return CUT_SHORT
        return decode_ip_by_version(p + 4, n - 4, k, 0)
    if link == LINK_PPP or link == LINK_PPP_HDLC or link == LINK_PPP_WITH_DIR:
        if link == LINK_PPP_WITH_DIR:
            if n < 1:
                return CUT_SHORT
            p += 1
            n -= 1
        if n >= 2 and p[0] == 0xFF and p[1] == 0x03:  # address and control
            p += 2
            n -= 2
        if n < 2:
            return CUT_SHORT
        if p[0] & 1:
            return decode_ppp_protocol(p[0], p + 1, n - 1, k, 0)
        return decode_ppp_protocol(be16(p), p + 2, n - 2, k, 0)
    if link == LINK_PPP_ETHER:  # PPPoE as BSD captures it: the session header, then PPP's protocol
        if n < 8:
            return CUT_SHORT
        return decode_ppp_protocol(be16(p + 6), p + 8, n - 8, k, 0)
    if link == LINK_C_HDLC:  # Cisco HDLC: address, control, then an ethertype
        if n < 4:
            return CUT_SHORT
        return decode_ethertype(be16(p + 2), p + 4, n - 4, k, 0)
    if link == LINK_PFLOG:  # OpenBSD's pf log: its header gives its own length, and the address family
        if n < 2 or p[0] > n:
            return CUT_SHORT
        family = (p[0] + 3) & ~3
        if family > n:
            return CUT_SHORT
        if p[1] == 2:
            return decode_ipv4(p + family, n - family, k, 0)
        if p[1] == 10 or p[1] == 24 or p[1] == 28 or p[1] == 30:
            return decode_ipv6(p + family, n - family, k, 0)
        return NOT_IP
    if link == LINK_NFLOG:  # Linux's NFLOG: a 4-byte header, then TLVs; type 9 holds the packet
        return decode_nflog(p, n, k)
    if link == LINK_PRISM:  # 144 bytes of radio information, then 802.11
        return decode_80211(p + 144, n - 144, k, 0) if n >= 144 else CUT_SHORT
    if link == LINK_AVS:  # its header gives its length, big-endian at byte 4
        if n < 8:
            return CUT_SHORT
        family = be32(p + 4)
        return decode_80211(p + family, n - family, k, 1) if family <= n else CUT_SHORT
    if link == LINK_PPI:  # its header: length (little-endian) at byte 2, the inner link type at byte 4
        if n < 8:
            return CUT_SHORT
        family = p[2] | (p[3] << 8)
        if family > n:
            return CUT_SHORT
        inner = p[4] | (p[5] << 8) | (p[6] << 16) | (<unsigned int>p[7] << 24)
        if inner == LINK_PPI:
            return LINK_UNREAD
        return decode_link(inner, p + family, n - family, k)
    if link == LINK_IEEE802_11:
        return decode_80211(p, n, k, 0)
    if link == LINK_RADIOTAP:
        if n < 4:
            return CUT_SHORT
        family = p[2] | (p[3] << 8)  # the radiotap header's length, little-endian
        if family > n:
            return CUT_SHORT
        return decode_80211_padded(p + family, n - family, k, radiotap_padded(p, family))
    return LINK_UNREAD

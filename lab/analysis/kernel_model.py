"""What the Linux kernel is expected to do, per ../shared/reference/linux-tcp-timers.md.

Tolerances come from the timer wheel (kernel/time/timer.c): a timer armed for D jiffies lands in the
wheel level whose granularity is 8**level jiffies and is rounded *up* to that granularity, so it
fires between D and D + granularity jiffies late, never early; arming mid-jiffy adds up to one more.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

LVL_CLK_SHIFT = 3  # each wheel level is 8 times coarser than the one below
LVL_SIZE = 64  # slots per level
LVL_DEPTH = 9
# CONFIG_HZ choices; with HZ unknown, tolerances take the widest of them.
HZ_CHOICES = (100, 250, 300, 1000)


def timer_slot(delay_s: float, hz: int) -> float:
    """Seconds of granularity of the wheel level a timer of `delay_s` lands on."""
    delta = math.ceil(delay_s * hz - 1e-9)
    for level in range(LVL_DEPTH):
        # LVL_START(level + 1): the smallest delta that no longer fits this level
        if delta < (LVL_SIZE - 1) << (level * LVL_CLK_SHIFT):
            return (1 << (level * LVL_CLK_SHIFT)) / hz
    return (1 << ((LVL_DEPTH - 1) * LVL_CLK_SHIFT)) / hz


def timer_lateness(delay_s: float, hz: Optional[int]) -> float:
    """The most a timer of `delay_s` fires after its nominal time: one slot plus one jiffy."""
    if hz is None:
        return max(timer_lateness(delay_s, h) for h in HZ_CHOICES)
    return timer_slot(delay_s, hz) + 1.0 / hz


def jiffy(hz: Optional[int]) -> float:
    return 1.0 / (hz or min(HZ_CHOICES))


@dataclass(frozen=True)
class Window:
    """An expected time (seconds) with the bounds the kernel's timers allow."""

    nominal: float
    low: float
    high: float

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.nominal:.3f} s (allowed {self.low:.3f}..{self.high:.3f})"


@dataclass(frozen=True)
class KeepaliveModel:
    """Keepalive on an idle connection whose peer went silent. Times count from the last received segment.

    keepidle T and keepintvl I in seconds, keepcnt, user_timeout U in milliseconds (0 = none).
    """

    keepidle: float
    keepintvl: float
    keepcnt: int
    user_timeout_ms: int
    hz: Optional[int]  # None: unknown, so the widest tolerance of any HZ
    # pcap timestamps and the kernel's jiffy bookkeeping do not line up to the microsecond:
    # the idle time is measured in whole jiffies, so the first probe may come up to a jiffy "early"
    # as seen from the capture.
    measure_slack: float = 0.001

    @property
    def jiffy(self) -> float:
        return jiffy(self.hz)

    def probe_counts(self) -> list[int]:
        """Every probe count the kernel may send before aborting (several only where U is within timer slack of a tick)."""
        if self.user_timeout_ms <= 0:
            return [self.keepcnt]
        u = self.user_timeout_ms / 1000.0
        t, i = self.keepidle, self.keepintvl
        latest = max(1, math.ceil((u - t) / i - 1e-9))
        # Tick k runs late by up to the accumulated lateness; if that already reaches U, the abort comes a tick early.
        earliest = latest
        for k in range(1, latest):
            if t + k * i + self.abort_lateness(k) >= u:
                earliest = k
                break
        return list(range(earliest, latest + 1))

    def first_probe(self) -> Window:
        t = self.keepidle
        return Window(t, t - self.jiffy - self.measure_slack, t + timer_lateness(t, self.hz) + self.measure_slack)

    def interval(self) -> Window:
        i = self.keepintvl
        return Window(i, i - self.measure_slack, i + timer_lateness(i, self.hz) + self.measure_slack)

    def abort_lateness(self, probes: int) -> float:
        return timer_lateness(self.keepidle, self.hz) + probes * timer_lateness(self.keepintvl, self.hz)

    def abort(self, probes: int) -> Window:
        """The abort (RST and ETIMEDOUT) after `probes` unanswered probes."""
        nominal = self.keepidle + probes * self.keepintvl
        return Window(nominal, nominal - self.jiffy - self.measure_slack, nominal + self.abort_lateness(probes) + self.measure_slack)

    def probe_times(self, probes: int) -> list[float]:
        return [self.keepidle + k * self.keepintvl for k in range(probes)]


TCP_RTO_MIN = 0.2
TCP_RTO_MAX = 120.0
# RFC 1122 4.2.2.17 / BSD: the persist interval a textbook shows, for comparison only.
TEXTBOOK_PERSIST = [5.0, 10.0, 20.0, 40.0, 60.0]


@dataclass(frozen=True)
class PersistModel:
    """Zero-window probing (tcp_probe_timer, tcp_send_probe0) for a sender whose peer's window is 0.

    The first probe comes max(RTO, 200 ms) after the zero window closed in all that was in flight;
    each later one doubles the interval, capped at TCP_RTO_MAX (120 s).
    """

    rto: float  # seconds: the RTO while the window is closed (from TCP_INFO)
    hz: Optional[int]
    measure_slack: float = 0.001

    @property
    def base(self) -> float:
        return max(self.rto, TCP_RTO_MIN)

    def nominal_interval(self, k: int) -> float:
        """Interval before probe k+1 (k = 0: from the zero window to the first probe)."""
        return min(self.base * (1 << min(k, 30)), TCP_RTO_MAX)

    def interval(self, k: int) -> Window:
        nominal = self.nominal_interval(k)
        return Window(nominal, nominal - self.measure_slack, nominal + timer_lateness(nominal, self.hz) + self.measure_slack)

    def schedule(self, until: float) -> list[float]:
        """Nominal probe times after the zero window, up to `until` seconds."""
        out, t, k = [], 0.0, 0
        while True:
            t += self.nominal_interval(k)
            if t > until or k > 64:
                return out
            out.append(t)
            k += 1

    def probe_counts(self, stall: float) -> list[int]:
        """Probes sent before the window reopens `stall` seconds after it closed.

        Probe k goes out between its nominal time and that time plus the lateness accumulated over
        its intervals, so a probe due within that slack of the reopening may or may not be sent.
        """
        certain = due = 0
        t = late = 0.0
        for k in range(64):
            t += self.nominal_interval(k)
            late += timer_lateness(self.nominal_interval(k), self.hz)
            if t > stall + self.measure_slack:
                break
            due += 1
            if t + late < stall:
                certain += 1
        return list(range(certain, due + 1))


# A machine whose vCPUs stall (an emulated VM: QEMU's TCG) fires each timer late by up to a stall beyond
# the wheel's slack. The run's own handshake round trip measures it (tens of microseconds on a bridge,
# a few milliseconds between TCG guests); it is allowed on the late side only, and never beyond this.
VCPU_STALL_CAP = 0.020


def vcpu_stall(handshake_rtt: float) -> float:
    """The stall a model allows beyond timer slack, from the handshake's round trip (Flow.handshake_rtt)."""
    return min(max(handshake_rtt, 0.0), VCPU_STALL_CAP)


def to_jiffies(seconds: float, hz: Optional[int]) -> float:
    """A duration rounded up to whole jiffies, as usecs_to_jiffies and msecs_to_jiffies do."""
    j = jiffy(hz)
    return math.ceil(seconds / j - 1e-9) * j


def backoff_boundary(retries: int, rto_base: float, rto_max: float = TCP_RTO_MAX) -> float:
    """tcp_model_timeout: the time `retries` doublings of `rto_base` take, the part past rto_max counted
    at rto_max. tcp_retries2 and tcp_syn_retries are this time, not a count of retransmissions."""
    thresh = int(math.log2(rto_max / rto_base))  # ilog2(TCP_RTO_MAX / rto_base)
    if retries <= thresh:
        return ((2 << retries) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (retries - thresh) * rto_max


@dataclass(frozen=True)
class RetransmitModel:
    """Data in flight to a peer that went silent (tcp_retransmit_timer, tcp_write_timeout), times from
    the send of the data nobody acknowledges.

    A tail loss probe first (the PTO: 2 x SRTT plus the RTO floor with one segment out, no later than
    the RTO), then RTO retransmissions: the first one an RTO after the probe, each later one twice the
    interval before, capped at rto_max. The connection is aborted, without an RST, at the first RTO
    expiry at which the time since the first RTO retransmission reaches the boundary: tcp_retries2's
    modelled time (backoff_boundary with a 200 ms base), or the user timeout U, whose last timer is
    clamped to end at exactly first RTO retransmission + U (tcp_clamp_rto_to_user_timeout).
    """

    rto: float  # seconds, the RTO when the data was sent (TCP_INFO's tcpi_rto)
    srtt: float  # seconds (TCP_INFO's tcpi_rtt)
    retries2: int
    user_timeout_ms: int
    hz: Optional[int]
    rto_min: float = TCP_RTO_MIN
    rto_max: float = TCP_RTO_MAX
    tlp: bool = True  # net.ipv4.tcp_early_retrans >= 3 (the default) sends the probe
    measure_slack: float = 0.001
    stall: float = 0.0  # vcpu_stall(): how late an emulated machine may act beyond the wheel

    @property
    def pto(self) -> float:
        # usecs_to_jiffies(2 x SRTT + rto_min), rounded up as a whole; no later than the RTO left
        return min(to_jiffies(2 * self.srtt + self.rto_min, self.hz), self.rto)

    @property
    def boundary(self) -> float:
        """Seconds after the first RTO retransmission at or past which the connection is aborted."""
        if self.user_timeout_ms > 0:
            return self.user_timeout_ms / 1000.0
        return backoff_boundary(self.retries2, TCP_RTO_MIN, self.rto_max)

    def intervals(self, n: int) -> list[float]:
        """Nominal intervals before each of the first n expiries (the probe's first, if any)."""
        out = [self.pto] if self.tlp else []
        k = 0
        while len(out) < n:
            out.append(min(self.rto * (1 << min(k, 30)), self.rto_max))
            k += 1
        return out[:n]

    def _expiries(self) -> tuple[list[float], list[float], list[float]]:
        """Every RTO expiry up to the abort: nominal times, the lateness they may have accumulated,
        and each one's interval (from the probe, or the send without one)."""
        first = 1 if self.tlp else 0
        ivs = self.intervals(first + 64)
        times, late, gaps = [], [], []
        t = lt = 0.0
        for k, iv in enumerate(ivs):
            t += iv
            lt += timer_lateness(iv, self.hz)
            if k < first:
                continue
            times.append(t)
            late.append(lt)
            gaps.append(iv)
            if t - times[0] >= self.boundary:
                break
        return times, late, gaps

    def retransmission_counts(self) -> list[int]:
        """How many RTO retransmissions come before the abort: expiries whose time since the first one
        is below the boundary; one within timer slack of it may or may not be sent."""
        times, late, _ = self._expiries()
        e1 = times[0]
        nominal = sum(1 for t in times if t - e1 < self.boundary)
        # An expiry due before the boundary may fire past it, late by the slack its timers gathered since the
        # first: the kernel then aborts there, one retransmission sooner (with U too: only a timer that
        # would run past U is clamped to it).
        earliest = sum(1 for t, lt in zip(times, late) if t - e1 + (lt - late[0]) + self.stall < self.boundary)
        return list(range(earliest, nominal + 1))

    def retransmission_times(self, n: int) -> list[float]:
        times, _, _ = self._expiries()
        return times[:n]

    def probe(self) -> Window:
        p = self.pto
        return Window(p, p - self.jiffy - self.measure_slack, p + timer_lateness(p, self.hz) + self.stall + self.measure_slack)

    def interval(self, nominal: float) -> Window:
        return Window(nominal, nominal - self.measure_slack, nominal + timer_lateness(nominal, self.hz) + self.stall + self.measure_slack)

    @property
    def jiffy(self) -> float:
        return jiffy(self.hz)

    def abort(self, retransmissions: int, first_rto: float) -> Window:
        """When the connection is aborted, from the send, given the measured first RTO retransmission
        (the kernel's clock for the boundary starts there)."""
        if self.user_timeout_ms > 0:
            # the clamped timer: what is left of U, in whole jiffies, plus its lateness
            u = self.user_timeout_ms / 1000.0
            nominal = first_rto + u
            return Window(nominal, nominal - self.measure_slack,
                          nominal + timer_lateness(u, self.hz) + 2 * self.jiffy + self.stall + self.measure_slack)
        times, late, gaps = self._expiries()
        k = min(retransmissions, len(times) - 1)
        nominal = first_rto + (times[k] - times[0])
        return Window(nominal, nominal - self.measure_slack, nominal + (late[k] - late[0]) + self.stall + self.measure_slack)


TCP_TIMEOUT_INIT = 1.0  # the first SYN's RTO (TCP_TIMEOUT_INIT; a BPF program could change it, none does here)


@dataclass(frozen=True)
class SynExpiry:
    """One expiry of the SYN timer, on the path where every timer fires on time."""

    retransmissions: int  # SYNs resent before this expiry
    nominal: float  # seconds from the first SYN
    late: float  # the most the timers up to this one can have added, together
    interval: float  # the timer that ends here (clamped to the user timeout where it was)
    clamped: bool  # the timer was cut short to end at the user timeout


@dataclass(frozen=True)
class SynRetryModel:
    """connect() to a peer that never answers: tcp_retransmit_timer and tcp_write_timeout in SYN-SENT.

    Times count from the first SYN (tcp_connect sets retrans_stamp there). The SYN timer starts at 1 s.
    On kernels with net.ipv4.tcp_syn_linear_timeouts (6.5 and later; 4 by default) the RTO stays at 1 s
    for that many retransmissions and doubles after; before 6.5 (`linear` 0) it doubles from the first.
    At each expiry, in this order (tcp_write_timeout):
    - the count: expired when the SYNs resent reach `syn_retries` (TCP_SYNCNT, else tcp_syn_retries)
      plus `linear`;
    - a time, checked only once a SYN was resent (retransmits_timed_out): with TCP_USER_TIMEOUT U, the
      time since the first SYN reaches U; without, it reaches backoff_boundary(syn_retries, 1 s), the
      time syn_retries doublings of 1 s take ((2 << r) - 1 s). U *replaces* that limit, so a large U
      lets a connect run past it, up to the count.
    Every re-armed timer is clamped to what is left of U (tcp_clamp_rto_to_user_timeout), so the user
    timeout ends the connect at U itself; the first SYN's timer is not (tcp_connect), so a U under 1 s
    still sends one retransmission at 1 s and fails a jiffy later. No RST is sent: connect() returns
    ETIMEDOUT. The same code in 6.1, 6.12 and 6.18 apart from the linear timeouts, and from 6.15 the
    RTO's cap (and the time limit's part past it) is the socket's tcp_rto_max_ms, 120 s unless tuned.
    """

    syn_retries: int  # effective: TCP_SYNCNT where set, else net.ipv4.tcp_syn_retries
    linear: int  # net.ipv4.tcp_syn_linear_timeouts; 0 where the kernel has no such sysctl
    user_timeout_ms: int
    hz: Optional[int]
    rto_max: float = TCP_RTO_MAX  # seconds: net.ipv4.tcp_rto_max_ms (6.15 and later), else TCP_RTO_MAX
    measure_slack: float = 0.001

    @property
    def jiffy(self) -> float:
        return jiffy(self.hz)

    def rto(self, k: int) -> float:
        """The RTO armed before retransmission k (1-based): 1 s, kept for `linear` retransmissions, then doubling."""
        doublings = max(0, k - 1 - self.linear)
        return min(TCP_TIMEOUT_INIT * (1 << min(doublings, 30)), self.rto_max)

    @property
    def time_boundary(self) -> float:
        """Seconds after the first SYN at or past which an expiry fails, without a user timeout."""
        return backoff_boundary(self.syn_retries, TCP_TIMEOUT_INIT, self.rto_max)

    @property
    def user_timeout(self) -> Optional[float]:
        return self.user_timeout_ms / 1000.0 if self.user_timeout_ms > 0 else None

    @property
    def limit(self) -> float:
        """The time limit in force: the user timeout where set, else the one syn_retries gives."""
        u = self.user_timeout
        return u if u is not None else self.time_boundary

    @property
    def max_retransmissions(self) -> int:
        return self.syn_retries + self.linear

    def _expired(self, retransmissions: int, elapsed: float) -> Optional[str]:
        if retransmissions >= self.max_retransmissions:
            return "count"
        if retransmissions > 0 and elapsed >= self.limit - 1e-9:
            return "user timeout" if self.user_timeout is not None else "time limit"
        return None

    def expiries(self) -> tuple[list[SynExpiry], str]:
        """Every expiry of the SYN timer up to the one that fails the connect, with every timer on time,
        and what failed it ("count", "time limit" or "user timeout")."""
        out: list[SynExpiry] = []
        t = late = 0.0
        k = 0
        interval, clamped = self.rto(1), False  # tcp_connect arms the first timer unclamped
        while True:
            t += interval
            late += timer_lateness(interval, self.hz)
            out.append(SynExpiry(k, t, late, interval, clamped))
            reason = self._expired(k, t)
            if reason is not None or k > 256:
                return out, reason or "count"
            k += 1
            interval, clamped = self.rto(k + 1), False
            u = self.user_timeout
            if u is not None and t + interval > u - 1e-9:
                # what is left of U, in whole jiffies (msecs_to_jiffies rounds up); 1 jiffy once it has passed
                interval, clamped = max(to_jiffies(u - t, self.hz), self.jiffy), True

    def outcome(self) -> tuple[int, float, str]:
        """(SYN retransmissions, nominal failure time from the first SYN, what ended it) with every timer on time."""
        expiries, reason = self.expiries()
        last = expiries[-1]
        return last.retransmissions, last.nominal, reason

    def why(self) -> str:
        """What ends the connect, in words, for a report line."""
        n, _, reason = self.outcome()
        if reason == "count":
            total = f"{self.max_retransmissions} retransmission{'s' if self.max_retransmissions != 1 else ''}"
            return (f"the count: {self.syn_retries} retries + {self.linear} linear = {total}" if self.linear else f"the count: {total}")
        if reason == "user timeout":
            return f"the user timeout, {self.user_timeout_ms} ms after the first SYN"
        return f"the time limit ((2 << {self.syn_retries}) - 1) x 1 s = {self.time_boundary:g} s after the first SYN"

    def retransmission_counts(self) -> list[int]:
        """How many SYNs may be resent before the connect fails: the on-time count, or one fewer... down to
        the first expiry that, as late as the timer wheel allows, would already be past the time limit."""
        expiries, reason = self.expiries()
        nominal = expiries[-1].retransmissions
        if reason == "count":
            earliest = nominal
            for e in expiries[1:-1]:
                if e.nominal + e.late >= self.limit:
                    earliest = e.retransmissions
                    break
            return list(range(earliest, nominal + 1))
        earliest = next((e.retransmissions for e in expiries[1:] if e.nominal + e.late >= self.limit), nominal)
        return list(range(min(earliest, nominal), nominal + 1))

    def syn_times(self, n: Optional[int] = None) -> list[float]:
        """Nominal times of the first n SYN retransmissions (all of them by default), from the first SYN."""
        n = self.outcome()[0] if n is None else n
        out, t = [], 0.0
        for k in range(1, n + 1):
            t += self.rto(k)
            out.append(t)
        return out

    def interval(self, k: int) -> Window:
        """The gap between SYN k-1 and SYN k (the first SYN is 0): never early, late by the wheel's slack."""
        nominal = self.rto(k)
        return Window(nominal, nominal - self.measure_slack, nominal + timer_lateness(nominal, self.hz) + self.measure_slack)

    def failure(self, retransmissions: Optional[int] = None) -> Window:
        """When connect() fails, from the first SYN, after `retransmissions` resent SYNs (the on-time count
        by default; one of retransmission_counts())."""
        expiries, reason = self.expiries()
        n = expiries[-1].retransmissions if retransmissions is None else retransmissions
        nominal = expiries[-1].nominal
        if n < expiries[-1].retransmissions:
            # A timer late enough to be past the limit already: it failed at the expiry after the n-th SYN.
            e = next(x for x in expiries if x.retransmissions == n)
            high = max(e.nominal + e.late, self.limit + timer_lateness(self.rto(n + 1), self.hz) + 2 * self.jiffy)
            return Window(self.limit, self.limit - self.measure_slack, high + self.measure_slack)
        last = expiries[-1]
        if last.clamped:
            # The clamped timer is what is left of U when it is armed, so it ends at U however late the timers
            # before it were (its own slack only, plus a jiffy each for msecs_to_jiffies and tcp_time_stamp's
            # milliseconds); where U had already passed when it was armed, one jiffy after that moment.
            prev = expiries[-2] if len(expiries) > 1 else SynExpiry(0, 0.0, 0.0, 0.0, False)
            end = max(self.limit, prev.nominal + prev.late + self.jiffy)
            high = end + timer_lateness(last.interval, self.hz) + 2 * self.jiffy
        else:
            high = nominal + last.late
        return Window(nominal, nominal - self.measure_slack, high + self.measure_slack)

    def textbook(self) -> list[float]:
        """tcp(7) and the textbook: SYNs resent at 1, 3, 7, 15 ... s, syn_retries of them."""
        return [float((2 << k) - 1) for k in range(self.syn_retries)]

    def textbook_failure(self) -> float:
        """tcp(7): connect() gives up (2 << syn_retries) - 1 s after the first SYN (127 s for the default 6)."""
        return float((2 << self.syn_retries) - 1)


def syn_linear_timeouts(sysctl_value: Optional[int]) -> int:
    """The linear SYN timeouts a kernel applies: its tcp_syn_linear_timeouts, or 0 where it has none (before 6.5)."""
    return int(sysctl_value) if sysctl_value is not None else 0


# The delayed-ACK timer: TCP_DELACK_MIN is HZ/25 jiffies (40 ms at every HZ), and a receiver in
# ping-pong mode (it has answered before) holds each ACK that long; quick-ACK mode at a connection's start
# acknowledges at once.
TCP_DELACK_MIN = 0.040


def delayed_ack(hz: Optional[int], slack: float = 0.001) -> Window:
    """The wait a delayed ACK adds, as seen on the wire: the 40 ms timer plus its lateness."""
    return Window(TCP_DELACK_MIN, TCP_DELACK_MIN - slack, TCP_DELACK_MIN + timer_lateness(TCP_DELACK_MIN, hz) + slack)


# The ping-pong threshold: how many replies a receiver sends (each within `ato` of the data it answers)
# before it delays its ACKs. 1 since 5.19 (4d8f24eeedc5 reverted 4a41f453bedf's 3), so in 6.1, 6.12 and
# 6.18 alike; a sysctl, net.ipv4.tcp_pingpong_thresh, from 6.7 (562b1fdf061b, default 1).
TCP_PINGPONG_THRESH = 1


@dataclass(frozen=True)
class RequestModel:
    """Requests on one connection, each `writes` small send()s and then a wait for the reply (write, write, read).

    The first small segment leaves at once; with Nagle on (no TCP_NODELAY) a second small one waits
    until the first is acknowledged (tcp_nagle_check, Minshall's variant). The receiver acknowledges
    at once in quick-ACK mode: at the start of a connection (tcp_incr_quickack's credits), and while it
    is not in ping-pong mode. Once it has sent `pingpong_thresh` replies it is in ping-pong mode
    (tcp_event_data_sent) and holds each ACK for its delayed-ACK timer (TCP_DELACK_MIN on a path whose
    RTT is below 40 ms); the timer's firing takes it out of ping-pong mode (tcp_delack_timer_handler),
    so `pingpong_thresh` more replies put it back: with a threshold N, requests N+1, 2N+1, 3N+1 ... pay
    the timer (every one after the first when N is 1, the default). TCP_QUICKACK set before each recv()
    takes it out of ping-pong mode each time (the option is not sticky: the next reply puts it back). So
    request n waits for the delayed-ACK timer when all of: two writes, Nagle on, no TCP_QUICKACK, and n
    is one of those.
    """

    writes: int
    nodelay: bool
    quickack: bool
    hz: Optional[int]
    pingpong_thresh: int = TCP_PINGPONG_THRESH

    def quick_acked(self, n: int) -> bool:
        """Whether the receiver acknowledges request n's first segment at once (1-based)."""
        thresh = max(self.pingpong_thresh, 1)
        return self.quickack or n <= thresh or (n - thresh - 1) % thresh != 0

    def held(self, n: int) -> bool:
        """Whether Nagle holds request n's second write back until the first is acknowledged."""
        return self.writes >= 2 and not self.nodelay

    def delayed(self, n: int) -> bool:
        """Whether request n pays the delayed-ACK timer: Nagle holds its second write for an ACK the receiver delays."""
        return self.held(n) and not self.quick_acked(n)

    def ack_wait(self) -> Window:
        """The delayed ACK's wait after the segment it acknowledges, as the sender sees it (less one round trip)."""
        return delayed_ack(self.hz)

    def latency(self, n: int, rtt: float, answer: Optional[float] = None, slack: float = 0.001) -> Window:
        """Request n from its first byte on the wire to the reply: fast ones below the delayed-ACK minimum; a
        delayed one the timer's window plus a round trip (the first segment's way there and its ACK's back),
        then the answer: from the request's last segment to the reply, a round trip and the server's time to
        read and reply. No TCP timer sets the answer (the server's scheduler does: milliseconds in a busy VM),
        so where the capture measured it, it is the request's own; without it, one round trip."""
        d = delayed_ack(self.hz)
        tail = rtt if answer is None else answer
        if self.delayed(n):
            return Window(d.nominal + rtt + tail, d.low + (answer or 0.0), d.high + rtt + tail + slack)
        return Window(rtt + tail, 0.0, d.low)


# TIME_WAIT: TCP_TIMEWAIT_LEN, fixed at build time (no sysctl; tcp_fin_timeout is FIN_WAIT2's).
TCP_TIMEWAIT_LEN = 60.0


def time_wait(hz: Optional[int], slack: float = 0.001) -> Window:
    """How long the side that closed first keeps its TIME_WAIT socket: 60 s, reaped by a timer of that length."""
    return Window(TCP_TIMEWAIT_LEN, TCP_TIMEWAIT_LEN - slack, TCP_TIMEWAIT_LEN + timer_lateness(TCP_TIMEWAIT_LEN, hz) + slack)


def textbook_persist_schedule(until: float) -> list[float]:
    out, t, k = [], 0.0, 0
    while k < 64:
        t += TEXTBOOK_PERSIST[min(k, len(TEXTBOOK_PERSIST) - 1)]
        if t > until:
            return out
        out.append(t)
        k += 1
    return out


# --- where Linux changed between the kernels tcplab runs on (6.1, 6.12, 6.18) -------------------------
# Read in the three kernels' net/ipv4 sources (Debian's 6.1.176, 6.12.107, 6.18.15). Keepalive (the
# probes' times and count, the abort and its RST, TCP_USER_TIMEOUT's part in it) and the persist
# timer's schedule (max(RTO, 200 ms), doubling, the 120 s cap by default, 0-byte probes, the 500 ms
# reply limit) are the same in all three: the models above hold for each, with no tolerance widened.
# (6.11 gave the tracepoint tcp:tcp_send_reset a reason field; no figure reads it, the READMEs say it.)


@dataclass(frozen=True)
class KernelChange:
    since: tuple[int, int]  # the first release with the new behaviour
    topic: str  # keepalive, persist or window: the measures.TOPICS whose figures show it
    before: str
    after: str
    commit: str


CHANGES = (
    KernelChange((6, 6), "window",
                 "the advertised window is the free receive space / 2 (tcp_adv_win_scale=1)",
                 "it is the free space x scaling_ratio/256, a ratio measured from arriving segments (len/truesize; "
                 "50% to start from 6.8): the same SO_RCVBUF takes a different number of bytes before the window closes",
                 "dfa2f0483360 tcp: get rid of sysctl_tcp_adv_win_scale (6.6); 697a6c8cec03 (6.8)"),
    KernelChange((6, 6), "window",
                 "a receiver out of memory drops the segment and says nothing",
                 "it answers at once with a zero-window ACK, and the sender retransmits rather than probes",
                 "e2142825c120, 800a666141de (6.6)"),
    KernelChange((6, 15), "persist",
                 "the RTO and the probe interval are capped at 120 s",
                 "the cap is per socket, net.ipv4.tcp_rto_max_ms (120000 by default, so the same schedule unless tuned)",
                 "54a378f43425, 1280c26228bd tcp: add tcp_rto_max_ms (6.15)"),
    KernelChange((6, 5), "syn",
                 "SYNs are resent at 1, 3, 7, 15 ... s and connect() fails after tcp_syn_retries of them (default 6: 127 s)",
                 "the first net.ipv4.tcp_syn_linear_timeouts (4) retransmissions keep the 1 s RTO: 1, 2, 3, 4, 5, 7, 11 ... s; "
                 "the count is tcp_syn_retries + 4, the time limit unchanged, so the default fails at 131 s",
                 "ccce324dabfe tcp: make the first N SYN RTO backoffs linear (6.5)"),
    KernelChange((6, 7), "delayed_ack",
                 "a delayed ACK waits at most 200 ms (TCP_DELACK_MAX); one quick reply makes the receiver delay (ping-pong, a constant threshold of 1)",
                 "at most the RTO floor less a jiffy (196 ms at HZ=250), and the ping-pong threshold is net.ipv4.tcp_pingpong_thresh "
                 "(1 by default): the same 40 ms delay on every request after the first",
                 "bbf80d713fe7 tcp: derive delack_max from rto_min; 562b1fdf061b tcp: set pingpong threshold via sysctl (6.7)"),
    KernelChange((6, 14), "time_wait",
                 "connect() to a loopback peer (or with tcp_tw_reuse=1) may reuse a TIME_WAIT port after 1-2 s (whole seconds of the timestamp)",
                 "after net.ipv4.tcp_tw_reuse_delay ms (1000 by default); TIME_WAIT itself is still 60 s, and a port bound by hand is "
                 "taken over with timestamps on in every kernel",
                 "the make-time-wait-reuse-delay-deterministic-and-configurable series, 154dee7c3265 (6.14)"),
    KernelChange((6, 11), "retransmission",
                 "the RTO floor is 200 ms (TCP_RTO_MIN) unless a route sets rto_min",
                 "it is per namespace, net.ipv4.tcp_rto_min_us (200000 by default), read when the socket is made; "
                 "the tail loss probe's 200 ms follows it, tcp_retries2's time does not (TCP_RTO_MIN, a constant)",
                 "f086edef71be tcp: add sysctl_tcp_rto_min_us (6.11)"),
    KernelChange((6, 15), "retransmission",
                 "tcp_retries2's time and the backoff's cap count TCP_RTO_MAX, a constant 120 s",
                 "they count the socket's own maximum, net.ipv4.tcp_rto_max_ms or TCP_RTO_MAX_MS (120 s unless tuned, "
                 "so the same times by default)",
                 "54a378f43425, 1280c26228bd tcp: add tcp_rto_max_ms (6.15)"),
)


def release_version(release: str) -> Optional[tuple[int, int]]:
    """(6, 12) from "6.12.117+deb13-amd64"; None if it does not start with a version."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or "x")
    except (IndexError, ValueError):
        return None


def changes_between(releases: list[str], topics: set[str]) -> list[tuple[KernelChange, list[str], list[str]]]:
    """The changes on `topics` that some of `releases` have and others not: (change, before, after)."""
    out = []
    versions = {r: release_version(r) for r in releases}
    for change in CHANGES:
        if change.topic not in topics:
            continue
        before = [r for r, v in versions.items() if v is not None and v < change.since]
        after = [r for r, v in versions.items() if v is not None and v >= change.since]
        if before and after:
            out.append((change, before, after))
    return out

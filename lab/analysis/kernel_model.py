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

"""Reading a trace of TCP state changes: the kernel's `sock:inet_sock_set_state` tracepoint (the
Linux counterpart of DTrace's tcp state-change probe) with the stack of each transition, as a
tracefs instance records it (lab/backends/localtrace.py, or the SSH agent on each machine).

Event times are CLOCK_MONOTONIC (the instance's trace_clock is `mono`); the clock readings taken
around the run put them on the wall clock the pcaps use. The cause of a transition is read from its
stack: a received packet, a system call, or a timer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from ..errors import LabError

EVENT_RE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+(?P<ts>\d+\.\d+): inet_sock_set_state: (?P<body>.*)$"
)
STACK_RE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+(?P<ts>\d+\.\d+): <stack trace>$")

# Read from the innermost frame out: the first frame that names a cause decides.
PACKET_FRAMES = {"tcp_rcv_state_process", "tcp_rcv_established", "tcp_fin", "tcp_reset", "tcp_v4_rcv", "tcp_v4_do_rcv",
                 "tcp_v6_rcv", "tcp_v6_do_rcv", "tcp_rcv_synsent_state_process", "tcp_check_req", "tcp_child_process"}
SYSCALL_FRAMES = {"__sys_connect", "tcp_v4_connect", "tcp_v6_connect", "__inet_stream_connect", "__sys_listen", "inet_listen",
                  "inet_csk_listen_start", "tcp_close", "__tcp_close", "tcp_shutdown", "inet_shutdown", "inet_release",
                  "__sys_shutdown", "tcp_disconnect", "inet_csk_accept"}
TIMER_FRAMES = {"tcp_write_timer", "tcp_write_timer_handler", "tcp_keepalive_timer", "tcp_retransmit_timer",
                "tcp_write_err", "tcp_probe_timer", "inet_csk_reqsk_queue_drop"}


@dataclass
class Transition:
    mono: float  # seconds, CLOCK_MONOTONIC
    wall: float  # the same moment on the wall clock (the pcaps' clock)
    pid: int
    task: str
    softirq: bool
    local: tuple[str, int]
    remote: tuple[str, int]
    old: str
    new: str
    stack: list[str] = field(default_factory=list)

    @property
    def cause(self) -> str:
        """'packet' (a received segment), 'syscall' (the program), 'timer', or 'unknown'."""
        for frame in self.stack:
            name = frame.split("+")[0].strip()
            if name in PACKET_FRAMES:
                return "packet"
            if name in SYSCALL_FRAMES:
                return "syscall"
            if name in TIMER_FRAMES:
                return "timer"
        return "unknown"  # no stack, or none that names a cause (timers run in softirq too)

    @property
    def syscall(self) -> Optional[str]:
        """The system call behind it (connect, listen, close, shutdown…), from the outermost __x64_sys_* frame."""
        for frame in reversed(self.stack):
            m = re.match(r"__(?:x64|arm64|ia32)_sys_(\w+)", frame.strip())
            if m:
                return m.group(1)
        return None


def parse(text: str, clock: list[tuple[float, float]]) -> list[Transition]:
    """The transitions in a raw trace, each with the stack recorded right after it."""
    offset = _offset(clock)
    out: list[Transition] = []
    current: Optional[Transition] = None  # the event whose stack the next frames are
    # Events still waiting for their stack, by CPU and task: the stack follows its event on the same
    # CPU, but another CPU's lines may come in between.
    waiting: dict[tuple[int, int], Transition] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = EVENT_RE.match(line)
        if m:
            f = dict(kv.split("=", 1) for kv in m.group("body").split() if "=" in kv)
            mono = float(m.group("ts"))
            event = Transition(
                mono=mono, wall=mono + offset, pid=int(m.group("pid")), task=m.group("task").strip(),
                softirq="s" in m.group("flags"), local=(f.get("saddr", ""), int(f.get("sport", 0))),
                remote=(f.get("daddr", ""), int(f.get("dport", 0))),
                old=f.get("oldstate", "").removeprefix("TCP_"), new=f.get("newstate", "").removeprefix("TCP_"),
            )
            out.append(event)
            waiting[(int(m.group("cpu")), event.pid)] = event
            current = None
            continue
        st = STACK_RE.match(line)
        if st:
            current = waiting.pop((int(st.group("cpu")), int(st.group("pid"))), None)
            continue
        if line.lstrip().startswith("=>") and current is not None:
            frame = line.strip()[2:].strip()
            if frame not in ("trace_event_raw_event_inet_sock_set_state", "inet_sk_state_store", "tcp_set_state"):
                current.stack.append(frame)
    return out


def _offset(clock: list[tuple[float, float]]) -> float:
    """wall - mono, the mean of the readings (they agree to microseconds unless the clock was stepped)."""
    if not clock:
        raise LabError("a state trace without clock readings cannot be put on the pcaps' time line")
    return sum(w - m for m, w in clock) / len(clock)

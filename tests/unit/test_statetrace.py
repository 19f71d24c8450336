"""Reading a raw state trace: events, their stacks, causes, and the clock."""
from lab.analysis import statetrace

TRACE = """\
# tracer: nop
          python-30348   [001] .....  7042.541646: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=9100 dport=0 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::ffff:0.0.0.0 daddrv6=::ffff:0.0.0.0 oldstate=TCP_CLOSE newstate=TCP_LISTEN
          python-30348   [001] .....  7042.541666: <stack trace>
 => trace_event_raw_event_inet_sock_set_state
 => inet_sk_state_store
 => inet_csk_listen_start
 => __inet_listen_sk
 => inet_listen
 => __sys_listen
 => __x64_sys_listen
 => do_syscall_64
          python-30350   [001] .....  7042.626518: <stack trace>
 => trace_event_raw_event_inet_sock_set_state
 => tcp_v4_connect
          python-30343   [001] .Ns2.  7042.688181: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=41000 dport=9100 saddr=10.0.1.1 daddr=10.0.1.2 saddrv6=::ffff:10.0.1.1 daddrv6=::ffff:10.0.1.2 oldstate=TCP_SYN_SENT newstate=TCP_ESTABLISHED
          python-30343   [001] .Ns2.  7042.688210: <stack trace>
 => trace_event_raw_event_inet_sock_set_state
 => inet_sk_state_store
 => tcp_rcv_state_process
 => tcp_v4_do_rcv
 => __release_sock
 => release_sock
 => __inet_stream_connect
 => __sys_connect
 => __x64_sys_connect
          python-30343   [001] ..s2.  7042.859541: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=41000 dport=9100 saddr=10.0.1.1 daddr=10.0.1.2 saddrv6=::ffff:10.0.1.1 daddrv6=::ffff:10.0.1.2 oldstate=TCP_FIN_WAIT2 newstate=TCP_CLOSE
"""


def test_events_stacks_and_causes():
    ts = statetrace.parse(TRACE, [(7000.0, 1_800_000_000.0)])
    assert [(t.old, t.new) for t in ts] == [("CLOSE", "LISTEN"), ("SYN_SENT", "ESTABLISHED"), ("FIN_WAIT2", "CLOSE")]
    listen, est, closed = ts
    assert listen.cause == "syscall" and listen.syscall == "listen" and listen.local == ("0.0.0.0", 9100)
    # The innermost cause wins: a received packet processed inside connect()'s release_sock.
    assert est.cause == "packet" and est.syscall == "connect" and est.softirq
    assert est.local == ("10.0.1.1", 41000) and est.remote == ("10.0.1.2", 9100)
    assert abs(est.wall - (1_800_000_000.0 + 42.688181)) < 1e-6
    # A stack without its event (another socket's, or none at all) is not attached to anything.
    assert "tcp_v4_connect" not in listen.stack and closed.stack == [] and closed.cause == "unknown"


def test_stacks_follow_their_event_on_the_same_cpu_when_lines_interleave():
    a = "          python-1   [000] .....  10.000001: inet_sock_set_state: sport=1 dport=9 saddr=10.0.0.1 daddr=10.0.0.2 oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1"
    b = "          python-2   [001] ..s1.  10.000002: inet_sock_set_state: sport=9 dport=1 saddr=10.0.0.2 daddr=10.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE_WAIT"
    text = "\n".join([a, b,
                     "          python-1   [000] .....  10.000003: <stack trace>", " => __tcp_close", " => tcp_close",
                     "          python-2   [001] ..s1.  10.000004: <stack trace>", " => tcp_fin", " => tcp_data_queue"])
    first, second = statetrace.parse(text, [(0.0, 0.0)])
    assert (first.cause, second.cause) == ("syscall", "packet")


def test_no_clock_no_timeline():
    import pytest

    from lab.errors import LabError

    with pytest.raises(LabError, match="without clock readings"):
        statetrace.parse(TRACE, [])

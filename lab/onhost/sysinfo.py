"""Facts about the machine that a results folder records: kernel, HZ, tool versions."""
from __future__ import annotations

import gzip
import platform
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

# TCP sysctls are per network namespace; these shape the keepalive and persist timers.
TCP_SYSCTLS = [
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_invalid_ratelimit",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts",  # 6.18 here; absent (None) on older kernels
    "net.ipv4.tcp_early_retrans",
    "net.ipv4.tcp_rto_min_us",
    "net.ipv4.tcp_rto_max_ms",
    "net.ipv4.tcp_autocorking",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_pingpong_thresh",  # 6.7 and later
    "net.ipv4.tcp_timestamps",
]
VERSION_COMMANDS = {
    "tcpdump": ["tcpdump", "--version"],
    "iptables": ["iptables", "--version"],
    "iproute2": ["ip", "-V"],
}


def kernel_hz() -> tuple[Optional[int], str]:
    """The kernel's HZ and where it was read; the timer tolerances depend on it."""
    release = platform.release()
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(errors="replace")
        m = re.search(r"^CONFIG_HZ=(\d+)$", text, re.M)
        if m:
            return int(m.group(1)), str(path)
    return None, "unknown (no kernel config found); checks assume HZ=100, the widest tolerances"


def tool_versions() -> dict[str, str]:
    # The commands run at once: each takes some milliseconds to start, on the way to every lab's first packet.
    with ThreadPoolExecutor(max_workers=len(VERSION_COMMANDS)) as pool:
        found = dict(zip(VERSION_COMMANDS, pool.map(_version, VERSION_COMMANDS.values())))
    return {"python": platform.python_version(), **found}


def _version(argv: list) -> str:
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def kernel() -> dict:
    hz, source = kernel_hz()
    return {"release": platform.release(), "machine": platform.machine(), "hz": hz, "hz_source": source}

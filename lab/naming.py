"""Names of everything a lab creates, so that cleanup removes exactly what one lab made."""
from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Optional

from .errors import LabError

PREFIX = "tcplab"
# Linux's IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15
# No dash in lab names: namespace names are "tcplab-<lab>-<node>", and a dash would let
# lab "a" claim the namespaces of lab "a-b" when sweeping by prefix.
LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,23}$")


def _state_root() -> Path:
    if os.geteuid() == 0:
        return Path("/run/tcplab")
    # Only the SSH backend runs without root; its labs are recorded in the user's runtime folder.
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "tcplab" if runtime else Path.home() / ".cache" / "tcplab" / "run"


STATE_ROOT = _state_root()


def check_lab_name(lab: str) -> str:
    if not LAB_NAME_RE.match(lab):
        raise LabError(
            f"--lab {lab!r}: use 1-24 lower-case letters, digits or '_' (no '-'), for example --lab lab2"
        )
    return lab


def netns_name(lab: str, node: str) -> str:
    return f"{PREFIX}-{lab}-{node}"


def netns_prefix(lab: str) -> str:
    return f"{PREFIX}-{lab}-"


def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab


def iptables_chain(lab: str) -> str:
    # iptables chain names are limited to 28 characters; lab names are at most 24.
    return f"TL_{lab}"[:28]


def link_alias(lab: str) -> str:
    """Written to every interface's ifalias so `ip link` shows which lab made it."""
    return f"{PREFIX}:{lab}"


def nft_table(lab: str) -> str:
    """The nftables table (bridge family) holding a lab's on-path drops."""
    return f"{PREFIX}_{lab}"


def mirror_interface(lab: str) -> str:
    """The dummy interface an SSH machine's captures use while a delay sits on its egress: a mirror of
    its data-plane interface's traffic taken before the delay (lab/backends/ssh/mirror.py)."""
    return f"tlm{zlib.crc32(lab.encode()):08x}"


def netem_probe_interface(lab: str) -> str:
    """The dummy interface on which netem is tried, and at once removed, to learn whether a kernel has it."""
    return f"tlp{zlib.crc32(lab.encode()):08x}"


def trace_instance(lab: str, host: Optional[str] = None) -> str:
    """The lab's tracefs instance; with `host`, one per machine (an SSH lab's machines may share a kernel)."""
    return f"{PREFIX}_{lab}" + (f"_{host}" if host else "")


# A hands-on lab's record, on each host, of what the host had before the person came (lab/onhost/handson.py).
HANDSON_BASELINE = "handson-baseline.json"


def handson_mark(lab: str, host: str) -> str:
    """The TCPLAB_MARK value of every process a person starts on a host of the lab (`invoke shell`, `exec`)."""
    return f"{lab}/{host}"


def keeper_log(lab: str) -> Path:
    """A hands-on lab's keeper's log: beside the state folder, not in it (the teardown removes that, and
    a keeper that failed leaves its log for `start` to show and `down` to remove)."""
    return STATE_ROOT / f"{lab}.keeper.log"

"""The SSH backend: machines of one's own (VMs, cloud instances) named in an inventory, each reached
with paramiko (connect.py, session.py), checked before anything starts (preflight.py), and driven by
an agent uploaded to it (agent.py); state traces on each machine (tracer.py)."""
from .backend import SshBackend
from .session import PROGRESS_BYTES, REMOTE_PATH, command_line

__all__ = ["SshBackend", "PROGRESS_BYTES", "REMOTE_PATH", "command_line"]

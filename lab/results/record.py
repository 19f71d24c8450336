"""What a run leaves in its results folder's manifest.json (lab/results/manifest.py reads it).

Written when the lab is up (exercise, parameters, the resolved `{name}` variables, backend, topology
and addresses, where it ran (this machine or a Swarm node), kernel release and HZ, the per-host TCP sysctls, tool versions, and the checks, plots
and measures with their arguments as templates), so a run cut short still has one; then again when
the run ends (its timeline as it ran, programs, captures, impairments, the state trace, and why it
stopped early if it did).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ..backends.base import Backend
from ..onhost.sysinfo import TCP_SYSCTLS
from ..spec.exercise import Exercise
from .folder import write_json
from .manifest import MANIFEST

VERSION = "0.1.0"


def start(ex: Exercise, lab: str, backend: Backend, folder: Path) -> dict[str, Any]:
    """The manifest of a run whose lab has just come up; written at once, so a run cut short still has one."""
    hosts = [h for h in ("source", "dest") if h in ex.topology.nodes] or list(ex.topology.nodes)
    # The timer checks read HZ; the client's host (source) is the one whose timers they measure.
    facts = backend.facts(hosts[0])
    manifest = {
        "tcplab": VERSION,
        "exercise": ex.name,
        "title": ex.title,
        "lab": lab,
        "backend": backend.name,
        "engine": engine(),
        "parameters": ex.values,
        "variables": ex.variables,
        "addresses": ex.addresses,
        "topology": ex.topology.to_dict(),
        "kernel": facts["kernel"],
        "sysctls": {h: backend.read_sysctls(h, sorted(set(TCP_SYSCTLS) | set(ex.sysctls.get(h, {})))) for h in hosts},
        "sysctls_set": ex.sysctls,
        "tools": facts["tools"],
        "started": now(),
        "checks": ex.checks,
        "plots": ex.plots,
        "measures": ex.measures,
        **backend.describe(),
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def engine() -> dict[str, str]:
    """Where the lab ran: {name: local}, or on a Swarm node, whose ID and hostname the service's
    environment carries (Swarm fills its {{.Node.ID}} and {{.Node.Hostname}} templates in)."""
    node_id = os.environ.get("TCPLAB_SWARM_NODE_ID")
    if not node_id:
        k8s_node = os.environ.get("TCPLAB_K8S_NODE_NAME")  # from the Job's downward API (lab/swarm/kubernetes.py)
        return {"name": "kubernetes", "node_hostname": k8s_node} if k8s_node else {"name": "local"}
    return {"name": "swarm", "node_id": node_id, "node_hostname": os.environ.get("TCPLAB_SWARM_NODE_HOSTNAME", "")}


def finish(folder: Path, manifest: dict[str, Any], summary: dict[str, Any], error: Optional[str]) -> None:
    """The manifest again, with what the run did and, if it stopped early, why."""
    manifest.update(summary)
    manifest["finished"] = now()
    if error:
        manifest["timeline_error"] = error
    write_json(folder / MANIFEST, manifest)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

"""manifest.json, read: what a run was and what it did (lab/results/record.py writes it), so its folder
can be judged on its own, later or elsewhere. `read` refuses a file that is not a tcplab manifest in
one line, before any check looks inside.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..spec import params

MANIFEST = "manifest.json"


def read(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{folder}: not a results folder (no {MANIFEST})") from None
    except ValueError as e:
        raise LabError(f"{path}: not valid JSON: {e}") from None
    check_shape(path, manifest)
    return manifest


def variables(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the checks', plots' and measures' placeholders name. The parameters are taken from
    `parameters`, so a re-check of a folder whose parameters were edited uses the edited ones; a
    folder from before `variables` was written gets the rest built from its addresses."""
    stored = manifest.get("variables")
    if not isinstance(stored, dict):
        stored = params.variables({}, manifest.get("addresses") or {}, manifest.get("lab"))
    return {**stored, **manifest["parameters"]}


def check_shape(path: Path, m: object) -> None:
    """A manifest edited by hand or written by another tool: refuse it in one line rather than fail deep inside a check."""
    def bad(what: str) -> LabError:
        return LabError(f"{path}: not a tcplab manifest: {what}")

    if not isinstance(m, dict):
        raise bad("expected a mapping")
    if not isinstance(m.get("parameters"), dict) or not isinstance(m.get("checks"), list):
        raise bad("needs a mapping 'parameters' and a list 'checks'")
    for section, kind in (("checks", "check"), ("plots", "plot"), ("measures", "measure")):
        if any(not isinstance(c, dict) or not isinstance(c.get(kind), str) for c in m.get(section) or []):
            raise bad(f"each entry of '{section}' is a mapping with a '{kind}' name")
    if m.get("kernel") is not None and not isinstance(m["kernel"], dict):
        raise bad("'kernel' is a mapping")
    if not isinstance(m.get("timeline") or [], list) or any(not isinstance(e, dict) for e in m.get("timeline") or []):
        raise bad("'timeline' is a list of mappings")
    if m.get("addresses") is not None and not isinstance(m["addresses"], dict):
        raise bad("'addresses' is a mapping")

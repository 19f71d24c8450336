"""Per-student values: each student's value of a parameter is drawn from the class's range by
HMAC-SHA256 of the class's secret over the student, the exercise and the parameter. The same student
always gets the same values, and nobody without the secret can compute another's. Each value is then
checked by the same code as `--set` (lab/spec/params.py)."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..spec.exercise import Exercise


def values(secret: str, student: str, ex: Exercise, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for param, (low, high) in sorted(ranges.items()):
        decl = ex.parameters[param]
        digest = hmac.new(secret.encode(), f"{student}/{ex.name}/{param}".encode(), hashlib.sha256).digest()
        draw = int.from_bytes(digest[:8], "big")
        if decl.type == "int":
            lo, hi = int(low), int(high)
            raw: Any = lo + draw % (hi - lo + 1)
        else:
            raw = round(float(low) + (float(high) - float(low)) * draw / 2**64, 3)
        out[param] = decl.convert(raw, f"the variant of {student} for {ex.name}")
    return out

"""A class file (`invoke serve --class FILE`): the class's name, its students, the exercises it offers
and, per exercise, parameter ranges from which each student gets values of their own
(lab/serve/variants.py). Checked field by field; every error names the file and the field."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, LabError
from ..spec import exercise as exercise_mod
from ..spec import yamlfile

STUDENT_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
INSTRUCTOR = "instructor"
MAX_STUDENTS = 500


@dataclass
class ClassFile:
    name: str
    students: list[str]
    exercises: list[str]  # offered, in the file's order (every exercise when the file names none)
    variants: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # exercise -> parameter -> [low, high]
    secret: Optional[str] = None
    file: Optional[Path] = None


def alone() -> ClassFile:
    """Without --class: the instructor alone, every exercise, no variants."""
    return ClassFile(name="tcplab", students=[], exercises=exercise_mod.known())


def load(path: Path) -> ClassFile:
    data = yamlfile.load(path)
    f = yamlfile.Fields(path, "", data if data is not None else {}).only(["class", "secret", "students", "exercises"])
    name = f.get("class", str, "class")
    secret = f.get("secret", str, None)
    if secret is not None and len(secret) < 16:
        raise f.error("secret", "use at least 16 characters (or leave it out: the server keeps a random one)")
    students = f.get("students", list)
    if not students:
        raise f.error("students", "name at least one student, e.g. students: [alice, bob]")
    if len(students) > MAX_STUDENTS:
        raise f.error("students", f"{len(students)} students; at most {MAX_STUDENTS}")
    for i, s in enumerate(students):
        if not isinstance(s, str) or not STUDENT_RE.match(s) or s == INSTRUCTOR:
            raise f.error(f"students[{i}]", f"{s!r}: use 1-32 of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
                                             f" (and not {INSTRUCTOR!r}, which is the instructor's)")
    seen = set()
    for i, s in enumerate(students):
        if s in seen:
            raise f.error(f"students[{i}]", f"{s!r} is named twice")
        seen.add(s)
    offered = f.sub("exercises", {})
    exercises = [str(k) for k in offered.value] or exercise_mod.known()
    variants: dict[str, dict[str, tuple[float, float]]] = {}
    for name_ in offered.value:
        try:
            ex = exercise_mod.load(str(name_))
        except LabError as e:
            raise offered.error(str(name_), str(e)) from None
        entry = offered.value[name_]
        one = yamlfile.Fields(path, offered.path(str(name_)), entry if entry is not None else {}).only(["variants"])
        ranges = one.sub("variants", {})
        for param, span in ranges.value.items():
            decl = ex.parameters.get(str(param))
            if decl is None:
                raise ranges.error(str(param), f"{ex.name} has no parameter {param!r}; its parameters: {', '.join(ex.parameters)}")
            if decl.type == "str":
                raise ranges.error(str(param), "a variant needs a numeric parameter")
            if (not isinstance(span, list) or len(span) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in span)
                    or span[0] > span[1]):
                raise ranges.error(str(param), f"{span!r}: write [low, high], two numbers with low <= high, e.g. [3, 9]")
            for end in span:
                try:
                    decl.convert(end, f"{path}: exercises.{name_}.variants.{param}")
                except LabError as e:
                    raise ConfigError(path, ranges.path(str(param)), str(e).split(": ", 2)[-1]) from None
            variants.setdefault(ex.name, {})[str(param)] = (span[0], span[1])
    return ClassFile(name=name, students=list(students), exercises=exercises, variants=variants, secret=secret, file=path)

"""Loading YAML data files with errors that name the file, the field and what is allowed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError


def load(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark:
            problem += f" ({context.replace('while ', '')}, which started at line {cmark.line + 1})"
        raise ConfigError(path, None, f"malformed YAML at {where}: {problem}") from None


class Fields:
    """Checks one mapping of a data file; every error carries the file and the dotted field path."""

    def __init__(self, file: Path, field: str, value: Any):
        self.file = file
        self.field = field
        if not isinstance(value, Mapping):
            raise ConfigError(file, field or None, f"expected a mapping, got {_kind(value)}")
        self.value = value

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, self.path(key), message)

    def path(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key

    def only(self, allowed: Iterable[str]) -> "Fields":
        allowed = list(allowed)
        for key in self.value:
            if key not in allowed:
                raise self.error(str(key), f"unknown field; allowed: {', '.join(allowed)}")
        return self

    def has(self, key: str) -> bool:
        return key in self.value

    def get(self, key: str, kind: type | tuple, default: Any = ..., *, what: str = "") -> Any:
        if key not in self.value:
            if default is ...:
                raise ConfigError(self.file, self.path(key), "required field is missing")
            return default
        value = self.value[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            want = what or _kind_name(kind)
            raise self.error(key, f"expected {want}, got {_kind(value)} {value!r}")
        return value

    def sub(self, key: str, default: Any = ...) -> "Fields":
        if key not in self.value and default is not ...:
            return Fields(self.file, self.path(key), default)
        return Fields(self.file, self.path(key), self.get(key, dict))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)

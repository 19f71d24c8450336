"""Exercise parameters: their declarations, `--set name=value` overrides, and substitution into steps.

Strings may hold `{name}` placeholders (parameters, `{<node>.ip}`, `{lab}`); a string that is exactly
one placeholder keeps the value's type. Numeric step fields (timeouts, sleeps) may be arithmetic
expressions over the parameters, such as "keepidle + keepintvl * keepcnt + 5". `variables` builds the
names a placeholder may use, the same way for an exercise being loaded and for a results folder's
checks, plots and measures.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from simpleeval import SimpleEval

from . import yamlfile
from ..errors import ConfigError, LabError

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
TYPES = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    help: str
    min: Optional[float] = None
    max: Optional[float] = None
    # Said after a value below min or above max: why the exercise keeps to that range, and what to do instead.
    range_hint: str = ""

    def convert(self, raw: Any, origin: str) -> Any:
        """Turns a default or a --set string into a checked value; `origin` says where it came from."""
        try:
            if self.type == "int" and isinstance(raw, str):
                value = int(raw, 0)
            elif self.type == "int" and isinstance(raw, float) and raw.is_integer():
                value = int(raw)
            else:
                value = TYPES[self.type](raw)
            if self.type == "int" and isinstance(raw, (float, bool)) and not isinstance(raw, int):
                raise ValueError
        except (TypeError, ValueError):
            raise LabError(f"{origin}: {self.name}={raw!r} is not {'an integer' if self.type == 'int' else 'a ' + self.type}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise LabError(f"{origin}: {self.name}={raw!r} is not a finite number")
        why = f": {self.range_hint}" if self.range_hint else f" ({self.help})"
        if self.min is not None and value < self.min:
            raise LabError(f"{origin}: {self.name}={value} is below the minimum {_number(self.min)}{why}")
        if self.max is not None and value > self.max:
            raise LabError(f"{origin}: {self.name}={value} is above the maximum {_number(self.max)}{why}")
        return value


def _number(x: float) -> str:
    """1073741824, not 1.07374e+09."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def parse_declarations(path: Path, f: yamlfile.Fields) -> dict[str, Parameter]:
    out = {}
    for name in f.value:
        if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise f.error(str(name), "parameter names are lower-case letters, digits and '_'")
        p = f.sub(name).only(["type", "default", "help", "min", "max", "range_hint"])
        type_ = p.get("type", str, "int")
        if type_ not in TYPES:
            raise p.error("type", f"{type_!r} is not a parameter type; allowed: {', '.join(TYPES)}")
        param = Parameter(
            name=name,
            type=type_,
            default=p.get("default", (int, float, str)),
            help=p.get("help", str),
            min=p.get("min", float, None),
            max=p.get("max", float, None),
            range_hint=p.get("range_hint", str, ""),
        )
        try:
            param.convert(param.default, "default")
        except LabError as e:
            raise p.error("default", str(e)) from None
        out[name] = param
    return out


def parse_overrides(items: Sequence[str], declared: Mapping[str, Parameter], exercise: str) -> dict[str, Any]:
    """Applies `--set name=value` items over the defaults, refusing names the exercise does not declare."""
    values = {name: p.convert(p.default, "default") for name, p in declared.items()}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise LabError(f"--set {item!r}: expected name=value, for example --set keepidle=5")
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise LabError(f"--set {name}: {exercise} has no parameter {name!r}; its parameters: {known}")
        values[name] = declared[name].convert(raw.strip(), f"--set {name}")
    return values


def variables(parameters: Mapping[str, Any], addresses: Mapping[str, Optional[str]], lab: Optional[str]) -> dict[str, Any]:
    """What a `{name}` placeholder may name: the parameters, each host's address as `{<host>.ip}`, and `{lab}`."""
    out: dict[str, Any] = dict(parameters)
    out.update({f"{host}.ip": ip for host, ip in addresses.items() if ip})
    if lab:
        out["lab"] = lab
    return out


def substitute(value: Any, variables: Mapping[str, Any], where: tuple[Path, str]) -> Any:
    """Replaces `{name}` placeholders in strings, lists and mappings."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return _lookup(whole.group(1), variables, where)
        return PLACEHOLDER.sub(lambda m: str(_lookup(m.group(1), variables, where)), value)
    if isinstance(value, list):
        return [substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables, where) for k, v in value.items()}
    return value


def evaluate(expr: Any, variables: Mapping[str, Any], where: tuple[Path, str]) -> float:
    """A number, or an arithmetic expression over the variables (no names other than those)."""
    if isinstance(expr, str) and PLACEHOLDER.fullmatch(expr.strip()):
        expr = substitute(expr.strip(), variables, where)  # "{loss}" means the parameter, as elsewhere
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return float(expr)
    if not isinstance(expr, str):
        raise ConfigError(where[0], where[1], f"expected a number or an expression, got {expr!r}")
    evaluator = SimpleEval(
        names={k: v for k, v in variables.items() if isinstance(v, (int, float))},
        functions={"min": min, "max": max, "ceil": math.ceil, "floor": math.floor},
    )
    try:
        result = evaluator.eval(expr)
    except Exception as e:  # simpleeval raises many kinds; all mean the expression is wrong
        raise ConfigError(where[0], where[1], f"cannot evaluate {expr!r}: {e}") from None
    if not isinstance(result, (int, float)) or isinstance(result, bool):
        raise ConfigError(where[0], where[1], f"{expr!r} does not give a number")
    return float(result)


def _lookup(name: str, variables: Mapping[str, Any], where: tuple[Path, str]) -> Any:
    if name not in variables:
        raise ConfigError(where[0], where[1], f"unknown placeholder {{{name}}}; known: {', '.join(sorted(variables))}")
    return variables[name]

"""The one exception type the command line turns into a single line and exit status 2."""
from __future__ import annotations

from typing import Optional


class LabError(Exception):
    """Bad input or an environment problem: shown as one line, never as a traceback."""


class ConfigError(LabError):
    """A problem in a topology or exercise file, located by file and field."""

    def __init__(self, file: object, field: Optional[str], message: str):
        self.file = str(file)
        self.field = field
        self.message = message
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {message}")

"""A shell on a hands-on lab's host, as `invoke shell` gives it, for a terminal that is not this
process's own: the lab server runs it on a pty it bridges to a browser.

    python -m lab.session.terminal LAB HOST
"""
from __future__ import annotations

import sys

from ..errors import LabError
from . import EXIT_BAD_INPUT
from .handson import shell

if __name__ == "__main__":
    try:
        sys.exit(shell(sys.argv[2], sys.argv[1]))
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

"""The commands tasks.py calls, one module each (up, handson: start/steps/shell/exec/watch/finish,
check, down, status, list, images, bench): each parses its arguments, calls lab/session/ for what it
does, and prints. Each returns its exit status. What several share: the labs this machine knows of
(lab/session/labs.py)."""

from ..session import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK  # noqa: F401  (the commands' exit statuses)

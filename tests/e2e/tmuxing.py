"""Driving real interactive sessions for the hands-on tests: a tmux session of the test's own, one
window per shell, keys typed as a person types them, the screen read back."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

from .conftest import REPO


class Tmux:
    def __init__(self, width: int = 220, height: int = 50):
        self.session = f"tcplabtest{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), "-c", str(REPO))
        self.windows = 1

    def _tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def window(self) -> str:
        """A new window (a terminal of its own), as `session:index`."""
        target = f"{self.session}:{self.windows}"
        self._tmux("new-window", "-t", target, "-c", str(REPO))
        self.windows += 1
        return target

    def type(self, target: str, line: str) -> None:
        self._tmux("send-keys", "-t", target, "-l", line)
        self._tmux("send-keys", "-t", target, "Enter")

    def keys(self, target: str, *keys: str) -> None:
        self._tmux("send-keys", "-t", target, *keys)

    def screen(self, target: str) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-3000", "-t", target)

    def wait_for(self, target: str, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(target)
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared in {target}:\n{self.screen(target)}")

    def shell(self, host: str, lab: str) -> str:
        """A window with `invoke shell HOST`, ready at its prompt."""
        target = self.window()
        self.type(target, f"{sys.executable} -m invoke shell {host} --lab {lab}")
        self.wait_for(target, f"[{lab} {host}]")
        return target

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)

"""`invoke serve --print-k8s-job EXERCISE`: the exercise as a Kubernetes Job (lab/swarm/kubernetes.py)."""
from __future__ import annotations

from ..backends.docker import images
from ..session import catalog  # noqa: F401  (the names exercises use)
from ..swarm import kubernetes
from . import EXIT_OK


def print_job(exercise: str) -> int:
    print(kubernetes.job(exercise, [], images.tcplab_tag()), end="")
    return EXIT_OK

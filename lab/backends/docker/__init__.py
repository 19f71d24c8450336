"""The Docker backend (containers of the lab's own, wired like namespaces) and its images."""
from .backend import DockerBackend, client, lab_names

__all__ = ["DockerBackend", "client", "lab_names"]

"""Checks for the retransmission exercise (being written)."""
from __future__ import annotations

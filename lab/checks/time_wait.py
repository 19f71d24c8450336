"""Checks for the time_wait exercise (being written)."""
from __future__ import annotations

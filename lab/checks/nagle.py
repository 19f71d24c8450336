"""Checks for the nagle exercise (being written)."""
from __future__ import annotations

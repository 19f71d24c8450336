"""Checks for the half_open exercise (being written)."""
from __future__ import annotations

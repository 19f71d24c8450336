"""Checks for the syn_retries exercise (being written)."""
from __future__ import annotations

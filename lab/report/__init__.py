"""What a results folder shows a person: the verdict (report.json and the table), pictures (window,
throughput, the state diagram), the figures a sweep compares (measures), and the comparison itself.
Importing this package registers its plots and measures (lab/spec/functions.py)."""
from . import measures, plots, statediagram  # noqa: F401  (importing registers them)

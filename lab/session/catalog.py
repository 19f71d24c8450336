"""Every check, plot and measure registered (lab/spec/functions.py): importing their modules does it.
Commands that load an exercise import this first, so exercise.yml's names can be checked before
anything is built."""
from .. import checks, report  # noqa: F401  (importing registers them)

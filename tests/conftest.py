"""What every test sees: tcplab's checks, plots and measures registered, as the commands have them
before they load an exercise (lab/cli/catalog.py)."""
import lab.session.catalog  # noqa: F401

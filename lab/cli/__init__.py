"""The commands tasks.py calls, one module each (up, check, down, status, list, images, bench), and
what several share: a lab's life from bring-up to teardown (lifecycle.py), the labs this machine
knows of (labs.py), and every check, plot and measure registered (catalog.py). Each command returns
its exit status."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

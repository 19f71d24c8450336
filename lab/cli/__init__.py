"""The commands tasks.py calls, one module each (up, handson: start/steps/shell/exec/watch/finish,
check, down, status, list, images, bench), and what several share: the labs this machine knows of
(labs.py), and every check, plot and measure registered (catalog.py). Each command returns its exit
status; a lab's bring-up and teardown are lab/run/lifecycle.py's."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

"""What a command does beyond parsing its arguments and printing: an exercise run (`up`, a sweep,
`--kernels`), a hands-on lab started, a shell on one of its hosts, its finish. The commands
(lab/cli/) and the lab server (lab/serve/) both call this layer; progress goes to the sink the caller
chose (lab/ui.py): the terminal, or a lab's event stream. Each entry returns an exit status."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

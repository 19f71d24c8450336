"""What captures and traces mean: the compiled scanner that streams a capture (Wireshark's TCP analysis,
packet by packet), TCP segment labels and the timers behind them, each connection's findings against
the kernel model of the timers, state-trace parsing, and the view checks, plots and measures read a folder by."""

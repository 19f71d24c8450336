"""tcplab: bring up small labs of real Linux TCP endpoints and check their timers from the packets."""

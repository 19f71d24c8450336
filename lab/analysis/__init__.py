"""What a results folder's captures and traces mean: the pcap reader, TCP segment labels, the kernel
model of the timers, state-trace parsing, and the view checks, plots and measures read a folder by."""

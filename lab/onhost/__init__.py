"""Programs and modules that run on the lab's hosts: the SSH agent, the delay line, tracefs,
stopping processes by PID, and the machine facts a results folder records.

Standard library only, Python 3.7 or later: the SSH backend uploads them to machines that have
nothing else, and the Docker backend mounts this folder into its containers.
"""

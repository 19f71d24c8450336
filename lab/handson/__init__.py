"""Hands-on mode: a person does the exercise's steps at shells on the lab's hosts, and tcplab watches.

`invoke start` brings the lab up under a keeper (keeper.py), a process of its own that holds the lab
until `invoke finish` or `invoke down`: it runs the lab's own capture, watches what the person does
(conditions.py) and what the wire shows (live.py), and keeps it in the lab's record (record.py) for
`steps`, `watch` and `status`. At `finish` it stops what the person started, collects their captures
and their programs' logs with the lab's own, writes the results folder (collect.py) and undoes what
they changed on the hosts.
"""

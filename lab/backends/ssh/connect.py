"""Connecting to one inventory machine with paramiko: host keys checked, every failure in one line.

Host keys are checked against the inventory's known_hosts file (and /etc/ssh/ssh_known_hosts). An
unknown key is refused unless the user asked to accept new keys, in which case it is appended to
the known_hosts file and the caller says so; a changed key is always refused.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

import paramiko

from ...errors import HostKeyError, LabError
from ...spec.inventory import Inventory, Machine, sudo_user

CONNECT_TIMEOUT = 10.0


def fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class _Policy(paramiko.MissingHostKeyPolicy):
    """What to do with a key known_hosts does not have: refuse it, or (asked for) append it."""

    def __init__(self, machine: Machine, known_hosts: Path, accept_new: bool, note: Callable[[str], None]):
        self.machine, self.known_hosts, self.accept_new, self.note = machine, known_hosts, accept_new, note

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept_new:
            raise HostKeyError(
                f"{self.machine}: host key unknown ({fingerprint(key)}) and not in {self.known_hosts}: "
                f"check the fingerprint with the machine's owner, then run again with --accept-new-host-keys to add it"
            )
        # Appended, not rewritten with paramiko's save_host_keys, which would drop the file's comments.
        folder = self.known_hosts.parent
        new_folder, new_file = not folder.exists(), not self.known_hosts.exists()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        for path, made in ((folder, new_folder), (self.known_hosts, new_file)):
            if made:
                _give_to_sudo_user(path)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.note(f"{self.machine}: accepted new host key {fingerprint(key)} and added it to {self.known_hosts}")


def connect(machine: Machine, inventory: Inventory, accept_new: bool = False,
            note: Callable[[str], None] = lambda s: None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for path in inventory.system_known_hosts:
        client.load_system_host_keys(str(path))
    if inventory.known_hosts.is_file():
        try:
            client.get_host_keys().load(str(inventory.known_hosts))
        except (OSError, paramiko.SSHException) as e:
            raise LabError(f"{inventory.known_hosts}: cannot read known hosts: {e}") from None
    client.set_missing_host_key_policy(_Policy(machine, inventory.known_hosts, accept_new, note))
    try:
        sock = paramiko.ProxyCommand(machine.proxy_command) if machine.proxy_command else None
        client.connect(
            machine.hostname, port=machine.port, username=machine.user,
            key_filename=list(machine.keys) or None,
            # The key files are found by the inventory (in the user's ~/.ssh, also under sudo); paramiko's
            # own search would look in root's. With IdentitiesOnly (as Vagrant writes) the agent stays out.
            look_for_keys=False, allow_agent=not machine.identities_only,
            timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT, sock=sock,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        entry = f"[{machine.hostname}]:{machine.port}" if machine.port != 22 else machine.hostname
        raise HostKeyError(
            f"{machine}: host key changed: {inventory.known_hosts} has {fingerprint(e.expected_key)}, "
            f"the machine offered {fingerprint(e.key)}. Refused: a changed key can mean someone is in the middle. If the machine "
            f"was rebuilt, remove the old key with `ssh-keygen -R '{entry}' -f {inventory.known_hosts}` and run again"
        ) from None
    except paramiko.AuthenticationException as e:
        client.close()
        offered = ", ".join(machine.keys) or "no key file (none given, none in ~/.ssh)"
        if not machine.identities_only:
            offered += " and the ssh-agent's keys"
        raise LabError(f"{machine}: authentication refused ({e}); offered {offered}: check `user` and `key` in the inventory") from None
    except socket.gaierror as e:
        client.close()
        raise LabError(f"{machine}: cannot resolve {machine.hostname!r}: {e.strerror}") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise LabError(f"{machine}: unreachable: no answer within {CONNECT_TIMEOUT:g} s") from None
    except paramiko.ssh_exception.NoValidConnectionsError as e:
        client.close()
        reasons = {os.strerror(err.errno) if err.errno else str(err) for err in e.errors.values()}
        raise LabError(f"{machine}: unreachable: {'; '.join(sorted(reasons))} (is sshd running there?)") from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        client.close()
        raise LabError(f"{machine}: SSH failed: {e or type(e).__name__}") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)
    return client


def _give_to_sudo_user(path: Path) -> None:
    """What is created under sudo in the user's ~/.ssh belongs to the user who ran sudo, as ssh would leave it."""
    user = sudo_user()
    if user is not None:
        try:
            os.chown(path, user.pw_uid, user.pw_gid)
        except OSError:
            pass

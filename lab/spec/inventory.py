"""The inventory format: which machines the SSH backend uses, by role.

    ssh_config: ~/.ssh/config        # where host aliases are looked up (this is the default)
    known_hosts: ~/.ssh/known_hosts  # host keys are checked against it (this is the default)
    defaults: {user: vagrant, sudo: true}
    machines:
      source:   {host: vm1, address: 192.168.56.11}
      dest:     {host: vm2, address: 192.168.56.12}
      observer: {host: vm3, interface: eth1}          # optional

Each machine: `host` (an address or an ssh_config alias), `user`, `port`, `key`, `sudo`, `address`
(the data-plane IPv4 address the exercise uses as {source.ip}; it may differ from the SSH address)
and `interface` (the data-plane interface; found from `address` when absent). A field set on the
machine wins over the ssh_config entry, which wins over `defaults`, as on ssh's command line.
`vagrant ssh-config > vagrant.ssh` makes a file to name as ssh_config.
"""
from __future__ import annotations

import contextlib
import getpass
import ipaddress
import os
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import paramiko

from ..errors import ConfigError
from . import yamlfile

ROLES = ("source", "dest", "observer")
REQUIRED_ROLES = ("source", "dest")
MACHINE_FIELDS = ("host", "user", "port", "key", "sudo", "address", "interface")
IFACE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
HOST_RE = re.compile(r"^[A-Za-z0-9_.:%\[\]-]{1,253}$")


@dataclass(frozen=True)
class Machine:
    role: str
    alias: str  # as written in the inventory: what messages name
    hostname: str  # what is connected to, after ssh_config
    port: int
    user: str
    keys: tuple[str, ...]  # key files; empty means ssh-agent and ~/.ssh/id_*
    identities_only: bool
    sudo: bool
    address: Optional[str]
    interface: Optional[str]
    proxy_command: Optional[str] = None

    def __str__(self) -> str:
        via = self.alias if self.alias == self.hostname else f"{self.alias}, {self.hostname}"
        return f"{self.role} ({self.user}@{via} port {self.port})"


@dataclass
class Inventory:
    file: Path
    machines: dict[str, Machine]
    known_hosts: Path
    # Read-only extra host keys (the system's), as ssh reads them.
    system_known_hosts: list[Path] = field(default_factory=list)

    def addresses(self) -> dict[str, str]:
        return {role: m.address for role, m in self.machines.items() if m.address}


def sudo_user() -> Optional[pwd.struct_passwd]:
    """The user who ran `sudo` (as ./bootstrap does), when we are root because of it."""
    name = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and name and name != "root":
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    return None


def user_home() -> Path:
    """The home of the person at the keyboard: under sudo, the user who ran sudo, whose keys and
    ~/.ssh/config the inventory means, not root's."""
    user = sudo_user()
    return Path(user.pw_dir) if user else Path.home()


def expand(path: str, relative_to: Path) -> Path:
    """~ is the user's home (see user_home); a relative path is relative to the inventory file."""
    if path == "~" or path.startswith("~/"):
        return user_home() / path[2:]
    p = Path(path)
    return p if p.is_absolute() else relative_to / p


def default_user() -> str:
    user = sudo_user()
    return user.pw_name if user else getpass.getuser()


@contextlib.contextmanager
def _home_is_users() -> Iterator[None]:
    """paramiko expands ~ in ssh_config (IdentityFile, UserKnownHostsFile) from $HOME, which sudo sets to root's."""
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(user_home())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


def load(path: str | Path) -> Inventory:
    file = Path(path).resolve()
    top = yamlfile.Fields(file, "", yamlfile.load(file) or {})
    top.only(["ssh_config", "known_hosts", "defaults", "machines"])
    base = file.parent

    config = paramiko.SSHConfig()
    if top.has("ssh_config"):
        config_file = expand(top.get("ssh_config", str), base)
        if not config_file.is_file():
            raise top.error("ssh_config", f"{config_file} does not exist (make one with `vagrant ssh-config > {config_file.name}`, or remove the field)")
    else:
        config_file = user_home() / ".ssh" / "config"
    if config_file.is_file():
        try:
            config = paramiko.SSHConfig.from_path(str(config_file))
        except Exception as e:  # paramiko raises plain exceptions on bad syntax
            raise ConfigError(config_file, None, f"cannot parse as an ssh config file: {e}") from None

    defaults = top.sub("defaults", {}).only([f for f in MACHINE_FIELDS if f not in ("host", "address", "interface")])
    machines_f = top.sub("machines")
    for role in machines_f.value:
        if role not in ROLES:
            raise machines_f.error(str(role), f"unknown role; roles: {', '.join(ROLES)}")
    for role in REQUIRED_ROLES:
        if role not in machines_f.value:
            raise machines_f.error(role, "required: the machine that plays this role")
    with _home_is_users():
        machines = {role: _machine(role, machines_f.sub(role), defaults, config, base) for role in ROLES if role in machines_f.value}

    seen: dict[tuple[str, int], str] = {}
    for m in machines.values():
        key = (m.hostname, m.port)
        if key in seen:
            raise machines_f.error(m.role, f"is the same machine as {seen[key]} ({m.hostname} port {m.port}); each role needs a machine of its own")
        seen[key] = m.role

    with _home_is_users():
        known_hosts_path = _known_hosts(top, config, machines, base)
    system = [p for p in (Path("/etc/ssh/ssh_known_hosts"),) if p.is_file()]
    return Inventory(file, machines, known_hosts_path, system)


def _machine(role: str, f: yamlfile.Fields, defaults: yamlfile.Fields, config: paramiko.SSHConfig, base: Path) -> Machine:
    f.only(MACHINE_FIELDS)
    alias = f.get("host", str)
    if not HOST_RE.match(alias):
        raise f.error("host", f"{alias!r} is not a host name, address or ssh_config alias")
    entry = config.lookup(alias)

    def pick(name: str, kind, from_config=None):
        if f.has(name):
            return f.get(name, kind), f
        if from_config is not None:
            return from_config, None
        if defaults.has(name):
            return defaults.get(name, kind), defaults
        return None, None

    hostname = entry.get("hostname", alias)
    user, where = pick("user", str, entry.get("user"))
    user = user or default_user()
    if not USER_RE.match(user):
        raise (where or f).error("user", f"{user!r} is not a user name")
    try:
        config_port = int(entry["port"]) if "port" in entry else None
    except ValueError:
        raise f.error("host", f"ssh_config gives {alias!r} the port {entry['port']!r}, which is not a number") from None
    port, where = pick("port", int, config_port)
    port = 22 if port is None else port
    if not 1 <= port <= 65535:
        raise (where or f).error("port", f"{port} is not a port number")
    # ssh_config may list identities that do not exist (defaults under `Host *`); only existing ones count.
    config_keys = tuple(str(expand(k, base)) for k in entry.get("identityfile", []) if expand(k, base).is_file())
    key, where = pick("key", str, config_keys or None)
    if where is not None:
        key_path = expand(key, base)
        if not key_path.is_file():
            raise where.error("key", f"{key_path} does not exist")
        keys: tuple[str, ...] = (str(key_path),)
    elif key:
        keys = key
    else:
        # ssh's own defaults, from the user's ~/.ssh (paramiko would look in root's under sudo).
        keys = tuple(str(p) for p in (user_home() / ".ssh" / f"id_{t}" for t in ("ed25519", "ecdsa", "rsa")) if p.is_file())
    sudo, _ = pick("sudo", bool)
    sudo = (user != "root") if sudo is None else sudo

    address = f.get("address", str, None)
    if address is None and role in REQUIRED_ROLES:
        # Default: the SSH address itself, when it is an IPv4 address.
        try:
            address = str(ipaddress.IPv4Address(hostname))
        except ValueError:
            raise f.error("address", f"required here ({hostname!r} is not an IPv4 address): the data-plane IPv4 address of {role}") from None
    elif address is not None:
        try:
            address = str(ipaddress.IPv4Address(address))
        except ValueError:
            raise f.error("address", f"{address!r} is not an IPv4 address") from None
    interface = f.get("interface", str, None)
    if interface is not None and not IFACE_RE.match(interface):
        raise f.error("interface", f"{interface!r} is not an interface name")
    if role not in REQUIRED_ROLES and interface is None:
        raise f.error("interface", f"required for {role}: the interface to capture on (for example eth1)")
    return Machine(
        role=role, alias=alias, hostname=hostname, port=port, user=user, keys=keys,
        identities_only=str(entry.get("identitiesonly", "no")).lower() == "yes",
        sudo=sudo, address=address, interface=interface, proxy_command=entry.get("proxycommand"),
    )


def _known_hosts(top: yamlfile.Fields, config: paramiko.SSHConfig, machines: dict[str, Machine], base: Path) -> Path:
    if top.has("known_hosts"):
        return expand(top.get("known_hosts", str), base)
    # The first machine's UserKnownHostsFile, as ssh would use it; /dev/null (Vagrant writes that,
    # with host key checking off) is not followed: checking stays on, and unknown keys are refused
    # unless --accept-new-host-keys is given.
    for m in machines.values():
        for candidate in config.lookup(m.alias).get("userknownhostsfile", "").split():
            if candidate != "/dev/null":
                return expand(candidate, base)
    return user_home() / ".ssh" / "known_hosts"

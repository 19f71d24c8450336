"""The inventory format and the SSH backend's command lines: pure logic, no machine needed."""
from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

import pytest

from lab.spec import inventory
from lab.backends.ssh import REMOTE_PATH, command_line
from lab.errors import ConfigError, LabError
from lab.spec.topology import load as load_topology

VAGRANT_SSH_CONFIG = """\
Host vm1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile {key}
  IdentitiesOnly yes
  LogLevel FATAL

Host vm2
  HostName 127.0.0.1
  User vagrant
  Port 2200
  IdentityFile {key}
  IdentitiesOnly yes
"""


def write(tmp_path: Path, text: str, name: str = "inventory.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    k = tmp_path / "id_test"
    k.write_text("not read by these tests")
    return k


def test_plain_addresses_and_defaults(tmp_path, key):
    inv = inventory.load(write(tmp_path, f"""
        known_hosts: kh
        defaults: {{user: vagrant, key: {key.name}}}
        machines:
          source: {{host: 192.168.56.11}}
          dest: {{host: 192.168.56.12, address: 10.0.1.2, user: root, port: 2022}}
    """))
    src, dst = inv.machines["source"], inv.machines["dest"]
    assert (src.hostname, src.port, src.user, src.sudo, src.address) == ("192.168.56.11", 22, "vagrant", True, "192.168.56.11")
    assert src.keys == (str(key),)  # relative to the inventory's folder
    # The machine's own fields win over defaults; root needs no sudo; the data plane may differ from SSH.
    assert (dst.port, dst.user, dst.sudo, dst.address) == (2022, "root", False, "10.0.1.2")
    assert inv.known_hosts == tmp_path / "kh"
    assert "observer" not in inv.machines
    assert inv.addresses() == {"source": "192.168.56.11", "dest": "10.0.1.2"}


def test_vagrant_ssh_config_aliases(tmp_path, key):
    write(tmp_path, VAGRANT_SSH_CONFIG.format(key=key), "vagrant.ssh")
    inv = inventory.load(write(tmp_path, """
        ssh_config: vagrant.ssh
        machines:
          source: {host: vm1, address: 192.168.56.11}
          dest: {host: vm2, address: 192.168.56.12, user: root}
    """))
    src, dst = inv.machines["source"], inv.machines["dest"]
    assert (src.alias, src.hostname, src.port, src.user, src.keys, src.identities_only) == ("vm1", "127.0.0.1", 2222, "vagrant", (str(key),), True)
    assert (dst.port, dst.user) == (2200, "root")  # the inventory wins over ssh_config
    assert "vm1, 127.0.0.1" in str(src)
    # Vagrant's UserKnownHostsFile /dev/null would turn checking off; it is not followed.
    assert inv.known_hosts == inventory.user_home() / ".ssh" / "known_hosts"


def test_observer_needs_an_interface_and_gets_no_default_address(tmp_path):
    base = """
        machines:
          source: {host: 10.0.0.1}
          dest: {host: 10.0.0.2}
          observer: {host: 10.0.0.3%s}
    """
    with pytest.raises(ConfigError, match=r"machines.observer.interface: required for observer"):
        inventory.load(write(tmp_path, base % ""))
    obs = inventory.load(write(tmp_path, base % ", interface: eth1")).machines["observer"]
    assert (obs.interface, obs.address) == ("eth1", None)


@pytest.mark.parametrize(
    "body, error",
    [
        ("machines: {source: {host: a}, dest: {host: 10.0.0.2}}", r"machines.source.address: required here \('a' is not an IPv4"),
        ("machines: {source: {host: 10.0.0.1}}", r"machines.dest: required"),
        ("machines: {source: {host: 10.0.0.1}, dest: {host: 10.0.0.2}, router: {host: x}}", r"machines.router: unknown role; roles: source, dest, observer"),
        ("machines: {source: {host: 10.0.0.1, address: 10.0.0.300}, dest: {host: 10.0.0.2}}", r"address: '10.0.0.300' is not an IPv4"),
        ("machines: {source: {host: 10.0.0.1, key: nokey}, dest: {host: 10.0.0.2}}", r"machines.source.key: .*nokey does not exist"),
        ("machines: {source: {host: 10.0.0.1, port: 70000}, dest: {host: 10.0.0.2}}", r"machines.source.port: 70000 is not a port"),
        ("machines: {source: {host: 10.0.0.1, sudo: yes please}, dest: {host: 10.0.0.2}}", r"machines.source.sudo: expected true or false"),
        ("machines: {source: {host: 10.0.0.1, interface: 'eth0; reboot'}, dest: {host: 10.0.0.2}}", r"is not an interface name"),
        ("machines: {source: {host: 'a b'}, dest: {host: 10.0.0.2}}", r"machines.source.host: 'a b' is not a host name"),
        ("machines: {source: {host: 10.0.0.1}, dest: {host: 10.0.0.1}}", r"machines.dest: is the same machine as source"),
        ("machines: {source: {host: 10.0.0.1, colour: red}, dest: {host: 10.0.0.2}}", r"machines.source.colour: unknown field"),
        ("ssh_config: nothere\nmachines: {}", r"ssh_config: .*nothere does not exist"),
        ("machines: [", r"malformed YAML at line"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, body, error):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError, match=error) as e:
        inventory.load(path)
    assert str(path) in str(e.value)


def test_tilde_is_the_sudo_users_home(monkeypatch, tmp_path):
    import pwd

    monkeypatch.setattr(inventory.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "someone")
    monkeypatch.setattr(pwd, "getpwnam", lambda name: type("pw", (), {"pw_dir": f"/home/{name}", "pw_name": name})())
    assert inventory.expand("~/.ssh/id_ed25519", tmp_path) == Path("/home/someone/.ssh/id_ed25519")
    assert inventory.default_user() == "someone"


@pytest.mark.parametrize(
    "argv",
    [
        ["iptables", "-A", "TL_x", "-p", "tcp", "--dport", "8990", "-j", "DROP"],
        ["python3", "-u", "/home/u/.tcplab/x/programs/ex/echo.py", "--msg", "$(touch /tmp/pwned); `id` && rm -rf / | cat > x 'q' \"d\" \\ *"],
        ["tcpdump", "-w", "/tmp/a b/c.pcap", "tcp port 80 and host 10.0.0.1", "\n", ""],
    ],
)
def test_command_lines_quote_every_word(argv):
    for sudo in (False, True):
        words = shlex.split(command_line(argv, sudo))
        prefix = ["sudo", "-n", "--"] if sudo else []
        assert words == [*prefix, "env", f"PATH={REMOTE_PATH}", *argv]


def test_topology_readdressed_keeps_prefixes():
    topo = load_topology("default")
    moved = topo.readdressed({"source": "192.168.56.11", "dest": "192.168.56.12"})
    assert (moved.nodes["source"].ip, moved.nodes["dest"].ip) == ("192.168.56.11", "192.168.56.12")
    assert str(moved.nodes["source"].interfaces["eth0"].ipv4) == "192.168.56.11/24"
    assert topo.nodes["source"].ip == "10.0.1.1"  # the original is untouched


def test_ssh_backend_needs_an_inventory_and_others_refuse_one():
    from lab import backends

    with pytest.raises(LabError, match=r"--backend ssh needs --inventory FILE"):
        backends.get("ssh", "lab1")
    with pytest.raises(LabError, match=r"--inventory and --accept-new-host-keys are for --backend ssh, not netns"):
        backends.get("netns", "lab1", "inventory.yml")


def test_an_ssh_config_key_wins_over_defaults(tmp_path, key):
    other = tmp_path / "id_default"
    other.write_text("x")
    write(tmp_path, VAGRANT_SSH_CONFIG.format(key=key), "vagrant.ssh")
    inv = inventory.load(write(tmp_path, f"""
        ssh_config: vagrant.ssh
        defaults: {{key: {other}}}
        machines:
          source: {{host: vm1, address: 192.168.56.11}}
          dest: {{host: 192.168.56.12}}
    """))
    assert inv.machines["source"].keys == (str(key),)  # from ssh_config
    assert inv.machines["dest"].keys == (str(other),)  # no ssh_config entry: from defaults

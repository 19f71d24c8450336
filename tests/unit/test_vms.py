"""The pure parts of VM sets: the recipe's hash, each VM's seed files, the inventory a set writes
(read back by the SSH backend's own loader), the accelerator's choice and its reasons."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.spec import inventory
from lab.session import kernels
from lab.cli import vms as vms_cli
from lab.onhost import procs
from lab.vms import accel, recipe, seed, teardown, vmset


def test_the_recipe_hash_follows_the_image_folder(tmp_path, monkeypatch):
    folder = tmp_path / "vm"
    shutil.copytree(recipe.VM_DIR, folder, symlinks=True)
    monkeypatch.setattr(recipe, "VM_DIR", folder)
    r = recipe.recipe("bookworm")
    before = r.key()
    assert r.key() == before  # the same inputs, the same image
    (folder / "setup.sh").write_text((folder / "setup.sh").read_text() + "\n# an edit\n")
    assert r.key() != before
    assert recipe.Recipe("bookworm", "bookworm", packages=("python3",)).key() != r.key()
    assert recipe.recipe("trixie").key() != r.key()


def test_an_unknown_kernel_or_name_is_refused():
    with pytest.raises(LabError, match="--kernel 'sid': VM kernels are bookworm, trixie"):
        recipe.recipe("sid")
    for bad in ("Bad", "a-b", "", "x" * 13):
        with pytest.raises(LabError, match="--name"):
            vmset.check_name(bad)
    assert vmset.check_name("bookworm") == "bookworm"


def test_seed_network_files_give_each_role_its_plane():
    src = vmset.VmRecord("source", 2222, "192.168.56.11", "eth1", macs=["52:54:00:7c:00:00", "52:54:00:7c:00:01"])
    files = seed.network_files(src)
    assert "Address=10.0.2.15/24" in files["10-mgmt.network"] and "MACAddress=52:54:00:7c:00:00" in files["10-mgmt.network"]
    assert "Address=192.168.56.11/24" in files["20-data.network"] and "MACAddress=52:54:00:7c:00:01" in files["20-data.network"]
    assert all("LinkLocalAddressing=no" in text for text in files.values())  # no IPv6 chatter in the captures
    obs = vmset.VmRecord("observer", 2224, None, "br0", macs=["52:54:00:7c:02:00", "52:54:00:7c:02:01", "52:54:00:7c:02:02"])
    files = seed.network_files(obs)
    assert "Kind=bridge" in files["20-br0.netdev"] and "Address=" not in files["20-br0.network"]
    assert [f for f in files if f.startswith("21-port")] == ["21-port0.network", "21-port1.network"]
    assert all("Bridge=br0" in files[f] for f in ("21-port0.network", "21-port1.network"))


def test_the_sets_inventory_is_one_the_ssh_backend_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(vmset, "ROOT", tmp_path)
    record = vmset.SetRecord(name="s3", kernel="trixie", count=3, kernel_release="6.12.117+deb13-amd64")
    record.folder.mkdir()
    for i, role in enumerate(record.roles):
        record.vms[role] = vmset.VmRecord(role, 40000 + i, vmset.DATA_ADDRESSES.get(role), "br0" if role == "observer" else "eth1")
    public = seed.keypair(record.path("id_ed25519"), "test")
    host_keys = {role: seed.keypair(tmp_path / f"host-{role}", role) for role in record.roles}
    path = record.write_access(host_keys)
    inv = inventory.load(path)
    assert set(inv.machines) == {"source", "dest", "observer"}
    src = inv.machines["source"]
    assert (src.hostname, src.port, src.user, src.sudo, src.address) == ("127.0.0.1", 40000, "root", False, "192.168.56.11")
    assert src.keys == (str(record.path("id_ed25519")),) and src.identities_only
    assert inv.machines["observer"].interface == "br0" and inv.machines["observer"].address is None
    assert inv.known_hosts == record.path("known_hosts")
    assert f"[127.0.0.1]:40001 {host_keys['dest']}" in inv.known_hosts.read_text()
    assert public.startswith("ssh-ed25519 ")


def test_kvm_is_refused_where_it_cannot_boot_debians_kernels(tmp_path):
    kvm, pvm = tmp_path / "kvm", tmp_path / "kvm_pvm"
    assert accel._kvm_problem(str(kvm), str(pvm), {"vmx"}) == "no /dev/kvm"
    kvm.write_bytes(b"")
    assert accel._kvm_problem(str(kvm), str(pvm), {"vmx"}) is None
    assert accel._kvm_problem(str(kvm), str(pvm), {"svm", "sse2"}) is None
    assert accel._kvm_problem(str(kvm), str(pvm), {"sse2"}) == "the CPU shows no vmx or svm"
    pvm.mkdir()
    assert "PVM (kvm_pvm)" in accel._kvm_problem(str(kvm), str(pvm), {"sse2"})
    kvm.chmod(0o400)
    if os.geteuid():  # root opens a read-only file anyway
        assert accel._kvm_problem(str(kvm), str(pvm), {"vmx"}).startswith("/dev/kvm: ")


def test_the_accelerator_follows_what_kvm_can_do(monkeypatch):
    monkeypatch.setattr(accel, "_kvm_problem", lambda: "/dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels")
    chosen = accel.choose("auto")
    assert chosen.name == "tcg" and "PVM" in chosen.why and "TCG" in chosen.why
    with pytest.raises(LabError, match="--accel kvm: "):
        accel.choose("kvm")
    assert accel.choose("tcg").qemu_args() == ["-accel", "tcg,thread=multi", "-cpu", "max"]
    monkeypatch.setattr(accel, "_kvm_problem", lambda: None)
    assert accel.choose("auto").name == "kvm" and accel.choose("kvm").qemu_args() == ["-accel", "kvm", "-cpu", "host"]
    with pytest.raises(LabError, match="--accel 'fast': choose one of auto, kvm, tcg"):
        accel.choose("fast")


def _booting(name: str, owner_pid: int) -> vmset.SetRecord:
    record = vmset.SetRecord(name=name, kernel="bookworm", count=2, owner_pid=owner_pid, owner_started=procs.start_time(owner_pid))
    record.folder.mkdir(parents=True)
    record.save()
    return record


def test_a_set_being_booted_is_neither_taken_over_nor_removed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vmset, "ROOT", tmp_path)
    _booting("busy", os.getpid())  # booted by a live `vms up`: this very process stands in for it
    with pytest.raises(LabError, match=r"VM set busy is being booted by `vms up` \(PID \d+\): Ctrl-C it"):
        vms_cli.down("busy")
    assert (tmp_path / "busy" / "set.json").exists()
    vms_cli.status()
    assert f"booting (by `vms up`, PID {os.getpid()})" in " ".join(capsys.readouterr().out.split())
    # `up --kernels` boots under another name while a set named after the kernel is in use
    assert kernels._free_name("busy") == "busy2" and kernels._free_name("trixie") == "trixie"


def test_a_set_whose_vms_up_was_killed_is_a_leftover(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vmset, "ROOT", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    _booting("gone", dead.pid)
    assert not teardown.being_booted(vmset.load("gone"))
    assert kernels._free_name("gone") == "gone"  # booting removes what is left
    vms_cli.status()
    assert "stopped (left over: `invoke vms down --name gone` removes it)" in " ".join(capsys.readouterr().out.split())
    assert vms_cli.down("gone") == 0 and not (tmp_path / "gone").exists()

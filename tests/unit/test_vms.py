"""The pure parts of VM sets: the recipe's hash, each VM's seed files, the inventory a set writes
(read back by the SSH backend's own loader), the accelerator's choice and its reasons."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.spec import inventory
from lab.vms import accel, recipe, seed, vmset


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


def test_the_accelerator_is_kvm_only_where_it_can_boot_debians_kernels():
    problem = accel._kvm_problem()
    chosen = accel.choose("auto")
    assert (chosen.name == "tcg") == (problem is not None)
    if problem:
        assert problem in chosen.why and "TCG" in chosen.why
        with pytest.raises(LabError, match="--accel kvm: "):
            accel.choose("kvm")
    if Path("/sys/module/kvm_pvm").exists() and not accel._cpu_flags() & {"vmx", "svm"}:
        assert "PVM" in problem
    assert accel.choose("tcg").qemu_args() == ["-accel", "tcg,thread=multi", "-cpu", "max"]
    with pytest.raises(LabError, match="--accel 'fast': choose one of auto, kvm, tcg"):
        accel.choose("fast")

import pytest

from lab.backends import preflight
from lab.errors import LabError


def test_not_root_says_how_to_run(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match=r"needs root.*sudo .*invoke up exercise2.*sudo ./bootstrap up exercise2"):
        preflight.require_root("up exercise2")


FULL = "Name:\tx\nCapEff:\t000001ffffffffff\n"


def test_every_capability_and_no_apparmor_profile_is_enough():
    assert preflight.capability_problem(FULL, "unconfined", container=True) is None
    assert preflight.capability_problem(FULL, "", container=False) is None


def test_a_container_without_the_capabilities_is_told_which_to_add():
    docker_default = "CapEff:\t00000000a80425fb\n"  # what `docker run` gives: neither NET_ADMIN nor SYS_ADMIN
    said = preflight.capability_problem(docker_default, "", container=True)
    assert said.endswith("lacks NET_ADMIN and SYS_ADMIN: run the container with --cap-add NET_ADMIN --cap-add SYS_ADMIN")
    only_net = f"CapEff:\t{0xa80425fb | 1 << 12:016x}\n"
    said = preflight.capability_problem(only_net, "", container=True)
    assert said.endswith("lacks SYS_ADMIN: run the container with --cap-add SYS_ADMIN")
    assert "capsh" in preflight.capability_problem(only_net, "", container=False)


def test_dockers_apparmor_profile_is_named_with_its_way_out():
    said = preflight.capability_problem(FULL, "docker-default (enforce)", container=True)
    assert "denies mount" in said and "--security-opt apparmor=unconfined" in said
    assert preflight.capability_problem(FULL, "docker-default (complain)", container=True) is None
    assert "cri-containerd.apparmor.d" in preflight.capability_problem(FULL, "cri-containerd.apparmor.d (enforce)", container=True)


def test_on_a_swarm_node_the_way_out_is_another_node(monkeypatch):
    monkeypatch.setenv("TCPLAB_SWARM_NODE_ID", "abc")
    said = preflight.capability_problem(FULL, "docker-default (enforce)", container=True)
    assert "cannot ask for another profile" in said and "--security-opt" not in said

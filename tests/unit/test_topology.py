import textwrap

import pytest

from lab.spec import topology
from lab.errors import ConfigError


def load_text(tmp_path, text):
    p = tmp_path / "t.yml"
    p.write_text(textwrap.dedent(text))
    return topology.load(p)


def test_default_topology():
    t = topology.load("default")
    assert set(t.nodes) == {"source", "dest", "observer"}
    assert t.nodes["source"].ip == "10.0.1.1" and t.nodes["dest"].ip == "10.0.1.2"
    plans = t.veths()
    assert {(p.a_node, p.a_name, p.b_node, p.b_name, p.b_bridge) for p in plans} == {
        ("source", "eth0", "observer", "source-eth0", "br0"),
        ("dest", "eth0", "observer", "dest-eth0", "br0"),
    }


@pytest.mark.parametrize(
    "text, field, words",
    [
        ("nodes: {a: {interfaces: {eth0: {ipv4: 10.0.1.300/24}}}}", "nodes.a.interfaces.eth0.ipv4", "not an IPv4"),
        ("nodes: {a: {interfaces: {eth0: {ipv4: 10.0.1.3}}}}", "nodes.a.interfaces.eth0.ipv4", "prefix length"),
        ("nodes: {a: {interfaces: {eth0: {}}}}\nlinks: [{endpoints: ['a:eth0', 'b:eth0']}]", "links[0].endpoints", "no node 'b'"),
        ("nodes: {a: {interfaces: {eth0: {}}}, b: {}}\nlinks: [{endpoints: ['a:eth0', 'b:eth9']}]", "links[0].endpoints", "no interface or bridge"),
        ("nodes: {a: {colour: red}}", "nodes.a.colour", "unknown field"),
        ("nodes: {Bad: {}}", "nodes.Bad", "node names"),
        ("nodes: {}", "nodes", "at least one node"),
        ("nodes: {a: {bridges: [b0]}, c: {bridges: [b1]}}\nlinks: [{endpoints: ['a:b0', 'c:b1']}]", "links[0].endpoints", "not two bridges"),
        ("nodes: {a: {interfaces: {e0: {}}}, b: {interfaces: {e0: {}, e1: {}}}}\nlinks: [{endpoints: ['a:e0', 'b:e0']}, {endpoints: ['a:e0', 'b:e1']}]",
         "links[1].endpoints", "already used"),
    ],
)
def test_errors_name_file_field_and_fix(tmp_path, text, field, words):
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    assert e.value.field == field
    assert words in e.value.message
    assert str(tmp_path / "t.yml") in str(e.value)


def test_interface_names_must_fit_linux(tmp_path):
    with pytest.raises(ConfigError, match="over Linux's 15 characters"):
        load_text(tmp_path, """
            nodes:
              observer: {bridges: [br0]}
              longnodenm: {interfaces: {ethernet: {}}}
            links: [{endpoints: ["longnodenm:ethernet", "observer:br0"]}]
        """)


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"malformed YAML at line 4.*started at line 3"):
        load_text(tmp_path, "nodes:\n  a: {}\n  b: [unclosed\n")


def test_unknown_topology_lists_known():
    with pytest.raises(ConfigError, match="known: default"):
        topology.load("nosuch")

"""The local Redis Cluster's reading of ``CLUSTER NODES`` (who is master, of which slots, failed)."""

from __future__ import annotations

from stream_app.tools.stack import parse_cluster_nodes

NODES = """\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 1426238318243 1426238318243 3 disconnected
6ec2 127.0.0.1:30005@40005 master - 0 1426238316232 7 connected 10923-16383 [93-<-292f]
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 16000
"""


def test_cluster_nodes_are_read_with_roles_slots_and_failures():
    views = {v.port: v for v in parse_cluster_nodes(NODES)}
    assert views[30004].master_id == "e7d1" and not views[30004].is_master
    assert views[30002].slots == ((5461, 10922),) and views[30002].serves(6000)
    assert views[30003].failed and not views[30003].connected and not views[30003].slots
    assert views[30005].slots == ((10923, 16383),)  # a migrating slot is not counted
    assert views[30001].is_master and views[30001].flags == {"master"}
    assert views[30001].serves(16000) and not views[30001].serves(15999)

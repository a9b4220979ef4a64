"""The cluster state machine's table: every action of the provider contract, with the
statuses it starts from and what its success leaves."""

from __future__ import annotations

from openpitrix.clusters.lifecycle import LIFECYCLE, LIVE
from openpitrix.clusters.models import Cluster
from openpitrix.clusters.schemas import Transition
from openpitrix.providers.base import CLUSTER_ACTIONS, RELEASE_ACTIONS


def test_every_action_of_the_contract_has_one_rule_and_lock_of_its_own() -> None:
    assert tuple(LIFECYCLE) == CLUSTER_ACTIONS
    locks = [rule.transition for rule in LIFECYCLE.values()]
    assert Transition.NONE not in locks and len(set(locks)) == len(locks)
    width = Cluster.model_fields["transition_status"].metadata
    max_length = next(m.max_length for m in width if hasattr(m, "max_length"))
    assert max(len(lock) for lock in locks) <= max_length
    assert {a for a, rule in LIFECYCLE.items() if rule.deploys} == RELEASE_ACTIONS


def test_the_table_says_where_each_action_starts_and_what_it_leaves() -> None:
    table = {
        action: (sorted(rule.starts_from), rule.leaves, rule.transition.value)
        for action, rule in LIFECYCLE.items()
    }
    assert table == {
        "create": ([], "active", "creating"),
        "upgrade": (["active"], "active", "upgrading"),
        "rollback": (["active"], "active", "rolling-back"),
        "update_env": (["active"], "active", "updating"),
        "stop": (["active"], "stopped", "stopping"),
        "start": (["stopped"], "active", "starting"),
        "resize": (["active", "stopped"], None, "resizing"),
        "add_nodes": (["active"], None, "adding-nodes"),
        "delete_nodes": (["active"], None, "deleting-nodes"),
        "delete": (["active", "pending", "stopped"], "deleted", "deleting"),
        "recover": (["deleted"], "active", "recovering"),
        "cease": (["deleted"], "ceased", "ceasing"),
        "refresh": (["active", "stopped"], None, "refreshing"),
    }
    # A runtime is in use while it has a cluster a delete could still act on.
    assert sorted(LIVE) == ["active", "pending", "stopped"]

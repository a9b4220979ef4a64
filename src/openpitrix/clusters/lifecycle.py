"""The cluster state machine as one table: for every cluster action, the lock it holds while
its job runs, the statuses it starts from, what a success leaves, and what its parameters are.

Whether a cluster may take an action at all is its provider's say
(`capabilities.cluster_actions`); this table says what the action means for the cluster row,
the same for every provider. A failed job of any action only releases the lock."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from openpitrix.clusters.schemas import ClusterStatus, Transition
from openpitrix.providers.base import (
    CLUSTER_ACTIONS,
    RELEASE_ACTIONS,
    AddNodesParams,
    DeleteNodesParams,
    ResizeParams,
)

PENDING, ACTIVE, STOPPED, DELETED, CEASED = (
    ClusterStatus.PENDING,
    ClusterStatus.ACTIVE,
    ClusterStatus.STOPPED,
    ClusterStatus.DELETED,
    ClusterStatus.CEASED,
)


@dataclass(frozen=True)
class ActionRule:
    """What one action does to the cluster row."""

    transition: Transition  # the lock's value while the job runs
    # The statuses the action starts from; empty for create (the cluster is new).
    starts_from: frozenset[ClusterStatus]
    # The status a successful job leaves; None keeps the status the cluster had.
    leaves: ClusterStatus | None
    # Whether it deploys a new release (a revision of version and values): a success makes
    # that revision the deployed one.
    deploys: bool = False
    # Its parameters (the request body less `dry_run`), handed to the provider's plan.
    params: type[BaseModel] | None = None


LIFECYCLE: dict[str, ActionRule] = {
    "create": ActionRule(Transition.CREATING, frozenset(), ACTIVE, deploys=True),
    "upgrade": ActionRule(Transition.UPGRADING, frozenset({ACTIVE}), ACTIVE, deploys=True),
    "rollback": ActionRule(Transition.ROLLING_BACK, frozenset({ACTIVE}), ACTIVE, deploys=True),
    "update_env": ActionRule(Transition.UPDATING, frozenset({ACTIVE}), ACTIVE, deploys=True),
    "stop": ActionRule(Transition.STOPPING, frozenset({ACTIVE}), STOPPED),
    "start": ActionRule(Transition.STARTING, frozenset({STOPPED}), ACTIVE),
    "resize": ActionRule(
        Transition.RESIZING, frozenset({ACTIVE, STOPPED}), None, params=ResizeParams
    ),
    "add_nodes": ActionRule(
        Transition.ADDING_NODES, frozenset({ACTIVE}), None, params=AddNodesParams
    ),
    "delete_nodes": ActionRule(
        Transition.DELETING_NODES, frozenset({ACTIVE}), None, params=DeleteNodesParams
    ),
    "delete": ActionRule(Transition.DELETING, frozenset({PENDING, ACTIVE, STOPPED}), DELETED),
    "recover": ActionRule(Transition.RECOVERING, frozenset({DELETED}), ACTIVE),
    "cease": ActionRule(Transition.CEASING, frozenset({DELETED}), CEASED),
    # Reads the cluster's roles and nodes from the cloud again (an instance stopped or lost
    # outside OpenPitrix shows as it is); it changes nothing there and keeps the status.
    "refresh": ActionRule(Transition.REFRESHING, frozenset({ACTIVE, STOPPED}), None),
}

# Every action of the contract has a rule, and the deploys are the contract's release actions.
assert tuple(LIFECYCLE) == CLUSTER_ACTIONS, "the lifecycle table must cover CLUSTER_ACTIONS"
assert {a for a, r in LIFECYCLE.items() if r.deploys} == RELEASE_ACTIONS

# The statuses in which a cluster still holds resources (what a delete may start from).
LIVE: tuple[ClusterStatus, ...] = tuple(sorted(LIFECYCLE["delete"].starts_from))


def rule_of(action: str) -> ActionRule:
    return LIFECYCLE[action]

"""Who may do what: the permission table (role -> operation -> data scope) and row visibility.

Every API route names one operation. A role either lacks it (403) or holds it with a scope
that decides which rows the caller sees and changes: `all`, `group` (rows whose owner_path
lies under the caller's group) or `own` (rows the caller owns). A row outside the scope is a
404, never a 403, so ids of other tenants' rows reveal nothing. Public repos and their
published apps are visible to every role that may read repos or apps at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, bindparam, func, or_, true
from sqlalchemy.orm import Mapped

from openpitrix.errors import AppError, NotFound
from openpitrix.iam.schemas import Role


class Scope(StrEnum):
    ALL = "all"
    GROUP = "group"
    OWN = "own"


class Op(StrEnum):
    """Operations routes are authorized for; names are `<resource>:<verb>`."""

    REPO_READ = "repo:read"
    REPO_WRITE = "repo:write"  # create, change, delete, index, validate
    APP_READ = "app:read"
    JOB_READ = "job:read"  # jobs, tasks, a job's event stream
    JOB_WRITE = "job:write"  # cancel and retry jobs
    EVENT_READ = "event:read"  # the /v1/events feed
    SELF = "self"  # one's own profile and password
    API_CLIENT = "api_client:manage"  # credentials for automation, acting as their owner
    USER_ADMIN = "user:admin"  # every user's account
    RUNTIME_READ = "runtime:read"
    RUNTIME_WRITE = "runtime:write"
    CLUSTER_READ = "cluster:read"
    CLUSTER_WRITE = "cluster:write"


ALL, GROUP, OWN = Scope.ALL, Scope.GROUP, Scope.OWN

# The rules, after OpenPitrix's roles: admin runs the platform; an ISV (app vendor) works on
# its group's repos and apps; a developer on their own repos, runtimes and clusters; a user
# deploys published apps onto their own runtimes. Runtime and cluster rows arrive with the
# deploy issue; their rules are here so the table is the whole policy.
PERMISSIONS: Mapping[Role, Mapping[Op, Scope]] = {
    Role.ADMIN: dict.fromkeys(Op, ALL),
    Role.ISV: {
        Op.REPO_READ: GROUP,
        Op.REPO_WRITE: GROUP,
        Op.APP_READ: GROUP,
        Op.JOB_READ: GROUP,
        Op.JOB_WRITE: GROUP,
        Op.EVENT_READ: GROUP,
        Op.SELF: OWN,
        Op.API_CLIENT: OWN,
        Op.RUNTIME_READ: GROUP,
        Op.RUNTIME_WRITE: GROUP,
        Op.CLUSTER_READ: GROUP,
        Op.CLUSTER_WRITE: GROUP,
    },
    Role.DEVELOPER: {
        Op.REPO_READ: OWN,
        Op.REPO_WRITE: OWN,
        Op.APP_READ: OWN,
        Op.JOB_READ: OWN,
        Op.JOB_WRITE: OWN,
        Op.EVENT_READ: OWN,
        Op.SELF: OWN,
        Op.API_CLIENT: OWN,
        Op.RUNTIME_READ: OWN,
        Op.RUNTIME_WRITE: OWN,
        Op.CLUSTER_READ: OWN,
        Op.CLUSTER_WRITE: OWN,
    },
    Role.USER: {
        # `own` on repos and apps: a user owns none, so this is "public ones only".
        Op.REPO_READ: OWN,
        Op.APP_READ: OWN,
        Op.JOB_READ: OWN,
        Op.JOB_WRITE: OWN,
        Op.EVENT_READ: OWN,
        Op.SELF: OWN,
        Op.API_CLIENT: OWN,
        Op.RUNTIME_READ: OWN,
        Op.RUNTIME_WRITE: OWN,
        Op.CLUSTER_READ: OWN,
        Op.CLUSTER_WRITE: OWN,
    },
}

# Operations under which public rows are visible beyond the scope.
PUBLIC_READS = frozenset({Op.REPO_READ, Op.APP_READ})


def scope_of(role: str, op: Op) -> Scope | None:
    try:
        return PERMISSIONS[Role(role)].get(op)
    except ValueError:
        return None


def owner_path_of(group_path: str, user_id: str) -> str:
    """`<group path>:<user id>`: a group's rows share a prefix, so group scope is a prefix
    match and sub-groups (`acme/team-a`) fall inside their parent group (`acme`)."""
    return f"{group_path}:{user_id}"


def scope_clause(
    scope: Scope, owner_col: Mapped[str], owner_path_col: Mapped[str]
) -> ColumnElement[bool]:
    """`Access.clause` of a scope with the caller's values as bind parameters (see
    `Access.clause_params`): one statement per scope serves every caller (db.reads.prepare)."""
    if scope == Scope.ALL:
        return true()
    if scope == Scope.GROUP:
        head = func.substr(owner_path_col, 1, bindparam("scope_group_length", type_=Integer))
        return or_(
            head == bindparam("scope_group", type_=String),
            head == bindparam("scope_sub_group", type_=String),
        )
    return owner_col == bindparam("scope_owner", type_=String)


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class Caller:
    """The authenticated principal: a user, or an API client acting as its owner."""

    user_id: str
    role: Role
    group_path: str = ""
    client_id: str | None = None

    @property
    def owner_path(self) -> str:
        return owner_path_of(self.group_path, self.user_id)

    def access(self, op: Op) -> Access:
        scope = scope_of(self.role, op)
        if scope is None:
            raise Forbidden(f"the {self.role} role may not do {op}", details={"operation": op})
        # Without a group, group scope narrows to the caller's own rows: an ISV outside any
        # group must not see every other ungrouped user's rows.
        if scope == Scope.GROUP and not self.group_path:
            scope = Scope.OWN
        return Access(self, op, scope)


@dataclass(frozen=True)
class Access:
    """A caller's right to one operation: which rows it reaches."""

    caller: Caller
    op: Op
    scope: Scope

    @property
    def owner(self) -> str:
        return self.caller.user_id

    @property
    def owner_path(self) -> str:
        return self.caller.owner_path

    def _group_prefixes(self) -> tuple[str, str]:
        group = self.caller.group_path
        return f"{group}:", f"{group}/"

    def covers(self, owner: str, owner_path: str) -> bool:
        """Whether a row with this owner lies inside the scope."""
        if self.scope == Scope.ALL:
            return True
        if self.scope == Scope.GROUP:
            return owner_path.startswith(self._group_prefixes())
        return owner == self.caller.user_id

    def sees(self, owner: str, owner_path: str, *, public: bool = False) -> bool:
        return self.covers(owner, owner_path) or (public and self.op in PUBLIC_READS)

    def clause(self, owner_col: Mapped[str], owner_path_col: Mapped[str]) -> ColumnElement[bool]:
        """`covers` as SQL, for lists."""
        if self.scope == Scope.ALL:
            return true()
        if self.scope == Scope.GROUP:
            own_group, sub_group = self._group_prefixes()
            # substr, not LIKE: group paths need no escaping and both databases agree.
            head = func.substr(owner_path_col, 1, len(own_group))
            return or_(head == own_group, head == sub_group)
        return owner_col == self.caller.user_id

    def clause_params(self) -> dict[str, Any]:
        """The values `scope_clause` of this access's scope binds."""
        if self.scope == Scope.ALL:
            return {}
        if self.scope == Scope.GROUP:
            own_group, sub_group = self._group_prefixes()
            return {
                "scope_group": own_group,
                "scope_sub_group": sub_group,
                "scope_group_length": len(own_group),
            }
        return {"scope_owner": self.caller.user_id}

    def check_visible(
        self, kind: str, ident: str, owner: str, owner_path: str, *, public: bool = False
    ) -> None:
        if not self.sees(owner, owner_path, public=public):
            raise NotFound(kind, ident)

    def check_writable(
        self, kind: str, ident: str, owner: str, owner_path: str, *, public: bool = False
    ) -> None:
        """404 for a row the caller cannot see; 403 for one it sees (public) but may not
        change."""
        if self.covers(owner, owner_path):
            return
        if public:
            raise Forbidden(f"{kind} {ident!r} belongs to someone else; it is read-only to you")
        raise NotFound(kind, ident)

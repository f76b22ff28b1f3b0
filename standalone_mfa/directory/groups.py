"""Groups: the named sets of users that the gateway's rules name (`group:staff`) and
that it passes on to protected apps in `Remote-Groups` (comma-separated, so a name
holds no comma and no space). Adding and removing a membership are idempotent and
audited, whoever does them (the CLI, the Users page)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from peewee import IntegrityError

from ..core import audit, messages
from ..core.audit import CHANGED, NO_CLIENT, UNCHANGED, Client
from ..core.db import Prepared, db, write_transaction
from ..core.models import User, UserGroup

GROUP_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
# A user's groups travel in one response header of every gateway check; proxies refuse
# an auth response whose headers outgrow their buffer (nginx: 4 KiB by default).
MAX_GROUPS_PER_USER = 50


class GroupError(ValueError):
    """A group name that cannot be one, or one group too many: nothing was changed."""


@dataclass(frozen=True)
class Change:
    """What an add or a remove did, and the message that says so (no secret in it)."""

    outcome: str
    message: str

    @property
    def changed(self) -> bool:
        return self.outcome == CHANGED


def group_name(raw: str | None) -> str:
    """The group name `raw` stands for (surrounding spaces dropped; case kept, as
    the gateway compares names exactly), or GroupError saying what a name may be."""
    name = (raw or "").strip()
    if not GROUP_PATTERN.fullmatch(name):
        raise GroupError(messages.text("bad_group_name"))
    return name


# The gateway asks for a user's groups on every check it allows: built once.
_GROUPS_OF = Prepared(
    lambda slot: UserGroup.select(UserGroup.name).where(UserGroup.user == slot("user_id"))
)


def groups_of(user: User) -> tuple[str, ...]:
    """The names of the groups `user` is in, sorted (by code point, on every database:
    the order `Remote-Groups` lists them in)."""
    return tuple(sorted(row.name for row in _GROUPS_OF.run(user_id=user.id)))


def groups_of_users(user_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """The groups of several users in one query (a page of the Users list)."""
    found: dict[int, list[str]] = {}
    query = UserGroup.select(UserGroup.user, UserGroup.name).where(UserGroup.user.in_(user_ids))
    for user_id, name in query.tuples():
        found.setdefault(user_id, []).append(name)
    return {user_id: tuple(sorted(names)) for user_id, names in found.items()}


def add(user: User, raw_name: str | None, *, actor: str, client: Client = NO_CLIENT) -> Change:
    """Put `user` in the group; already in it is a no-op that says so. A bad name
    raises GroupError before anything is written."""
    name = group_name(raw_name)
    with write_transaction():
        held = UserGroup.select(UserGroup.name).where(UserGroup.user == user.id)
        names = {row.name for row in held}
        if name in names:
            outcome = UNCHANGED
        elif len(names) >= MAX_GROUPS_PER_USER:
            raise GroupError(
                messages.text("too_many_groups", name=user.username, most=MAX_GROUPS_PER_USER)
            )
        else:
            outcome = _insert(user, name)
        audit.record("group_add", outcome, user=user, actor=actor, detail=name, client=client)
    said = messages.text(
        "group_added" if outcome == CHANGED else "group_already", name=user.username, group=name
    )
    return Change(outcome, said)


def _insert(user: User, name: str) -> str:
    # On PostgreSQL another request may add the same membership meanwhile: the unique
    # index says so, and only this savepoint is rolled back.
    try:
        with db.atomic():
            UserGroup.create(user=user.id, name=name)
    except IntegrityError:
        return UNCHANGED
    return CHANGED


def remove(user: User, raw_name: str | None, *, actor: str, client: Client = NO_CLIENT) -> Change:
    """Take `user` out of the group; not in it is a no-op that says so. A bad name
    raises GroupError before anything is written."""
    name = group_name(raw_name)
    with write_transaction():
        deleted = (
            UserGroup.delete()
            .where((UserGroup.user == user.id) & (UserGroup.name == name))
            .execute()
        )
        outcome = CHANGED if deleted else UNCHANGED
        audit.record("group_remove", outcome, user=user, actor=actor, detail=name, client=client)
    said = messages.text(
        "group_removed" if outcome == CHANGED else "group_not_member",
        name=user.username,
        group=name,
    )
    return Change(outcome, said)

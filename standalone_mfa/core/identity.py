"""The gateway's one query for who holds a credential: a holder's row (a browser
session, an app password) with its user's name and address, the user's groups and
the site's MFA method, one row per group (the gateway's check and the app-password
check build it the same way, each prepared once: `core.db.Prepared`)."""

from __future__ import annotations

from peewee import JOIN

from .models import Setting, User, UserGroup

_MFA_METHOD = Setting.select(Setting.value).where(Setting.key == "mfa_method")


def holder_query(holder, *columns, where):
    """`columns` of the `holder` model's row matching `where` (it has a `user` key),
    then its user's username and email, a group's name (None without groups) and the
    MFA method, as tuples ordered by group."""
    return (
        holder.select(
            *columns, User.username, User.email, UserGroup.name, _MFA_METHOD.alias("mfa_method")
        )
        .join(User)
        .join(UserGroup, JOIN.LEFT_OUTER, on=(UserGroup.user == User.id))
        .where(where)
        .order_by(UserGroup.name)
        .tuples()
    )

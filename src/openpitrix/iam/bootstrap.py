"""The first admin: created when no user exists, so a fresh install can be logged into."""

from __future__ import annotations

from openpitrix.db.engine import Database
from openpitrix.errors import Conflict
from openpitrix.iam import passwords, service
from openpitrix.iam.schemas import Role
from openpitrix.settings import Settings

DEFAULT_ADMIN_EMAIL = "admin@localhost"


async def ensure_bootstrap_admin(db: Database, settings: Settings) -> str | None:
    """Create the first admin if there is no user at all.

    Returns the password when it was generated here (the caller shows it once), else None.
    Safe when several processes start at once: on SQLite their transactions are serialized
    and the second sees the first's user; on PostgreSQL the second insert hits the unique
    email index and gives up.
    """
    email = settings.bootstrap_admin_email or DEFAULT_ADMIN_EMAIL
    given = settings.bootstrap_admin_password
    password = given.get_secret_value() if given is not None else passwords.generate_password()
    try:
        async with db.transaction() as session:
            if await service.any_user_exists(session):
                return None
            await service.create_user(
                session, email=email, name="Administrator", role=Role.ADMIN, password=password
            )
    except Conflict as exc:
        if exc.code != "user_email_taken":
            raise
        return None
    return None if given is not None else password

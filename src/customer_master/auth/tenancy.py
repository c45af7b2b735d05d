"""Who is calling, and for which org.

`OrgId` is only made here, from a verified token: every service function takes one, so a query
that forgot its tenant does not type-check.
"""

import uuid
from dataclasses import dataclass
from typing import NewType

from customer_master.auth.models import Role

OrgId = NewType("OrgId", uuid.UUID)


@dataclass(frozen=True)
class Principal:
    org_id: OrgId
    org_slug: str
    org_name: str
    role: Role
    user_id: uuid.UUID | None = None
    user_email: str | None = None
    user_name: str | None = None
    token_id: uuid.UUID | None = None
    token_name: str | None = None

"""Org settings (API.md §3), kept in `org.settings_json`; today they are the detection settings.

Only what an admin set is stored, so an org that never changed a setting follows the default, and a
`null` in a patch returns a setting to its default.
"""

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection.schemas import CustomerDetectionSettings, OrgSettings, OrgSettingsPatch
from customer_master.errors import NotFound
from customer_master.merge_patch import merge_patch

SECTION = "customer_detection"


async def _stored(session: AsyncSession, org_id: OrgId, *, lock: bool = False) -> dict[str, Any]:
    sql = "SELECT settings_json FROM org WHERE id = :org_id" + (" FOR NO KEY UPDATE" if lock else "")
    stored = await session.scalar(text(sql), {"org_id": org_id})
    if stored is None:
        raise NotFound("No such org")
    return dict(stored)


def _settings_of(stored: dict[str, Any]) -> OrgSettings:
    return OrgSettings.model_validate({SECTION: stored.get(SECTION) or {}})


async def get_org_settings(session: AsyncSession, org_id: OrgId) -> OrgSettings:
    """The org's settings, defaults filled in (read on the driver: detection reads them on every call)."""
    conn = await driver_connection(session)
    stored = await conn.fetchval("SELECT settings_json FROM org WHERE id = $1", org_id)
    if stored is None:
        raise NotFound("No such org")
    return _settings_of(stored if isinstance(stored, dict) else json.loads(stored))


async def detection_settings(session: AsyncSession, org_id: OrgId) -> CustomerDetectionSettings:
    return (await get_org_settings(session, org_id)).customer_detection


async def update_org_settings(session: AsyncSession, org_id: OrgId, patch: OrgSettingsPatch) -> OrgSettings:
    """Apply a JSON Merge Patch (already validated) and return the settings as they now are."""
    stored = await _stored(session, org_id, lock=True)  # two admins patching at once: one after the other
    changes = patch.model_dump(mode="json", exclude_unset=True)
    merged = merge_patch({SECTION: stored.get(SECTION) or {}}, changes)
    section = merged.get(SECTION) or {}
    settings = _settings_of({SECTION: section})
    new_stored = {**stored, SECTION: section}
    if new_stored != stored:
        await session.execute(
            text("UPDATE org SET settings_json = CAST(:settings AS jsonb) WHERE id = :org_id"),
            {"settings": json.dumps(new_stored), "org_id": org_id},
        )
    return settings

"""Org settings (API.md §3), kept in `org.settings_json`; today they are the detection settings.

Only what an admin set is stored, so an org that never changed a setting follows the default, and a
`null` in a patch returns a setting to its default.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.detection import repository
from customer_master.detection.schemas import CustomerDetectionSettings, OrgSettings, OrgSettingsPatch
from customer_master.errors import NotFound
from customer_master.merge_patch import merge_patch

SECTION = "customer_detection"


def _settings_of(stored: dict[str, Any]) -> OrgSettings:
    return OrgSettings.model_validate({SECTION: stored.get(SECTION) or {}})


async def get_org_settings(session: AsyncSession, org_id: OrgId) -> OrgSettings:
    """The org's settings, defaults filled in."""
    stored = await repository.org_settings_json(session, org_id)
    if stored is None:
        raise NotFound("No such org")
    return _settings_of(stored)


async def detection_settings(session: AsyncSession, org_id: OrgId) -> CustomerDetectionSettings:
    return (await get_org_settings(session, org_id)).customer_detection


async def update_org_settings(session: AsyncSession, org_id: OrgId, patch: OrgSettingsPatch) -> OrgSettings:
    """Apply a JSON Merge Patch (already validated) and return the settings as they now are."""
    stored = await repository.lock_org_settings_json(session, org_id)
    if stored is None:
        raise NotFound("No such org")
    changes = patch.model_dump(mode="json", exclude_unset=True)
    merged = merge_patch({SECTION: stored.get(SECTION) or {}}, changes)
    section = merged.get(SECTION) or {}
    settings = _settings_of({SECTION: section})
    new_stored = {**stored, SECTION: section}
    if new_stored != stored:
        await repository.write_org_settings_json(session, org_id, new_stored)
    return settings

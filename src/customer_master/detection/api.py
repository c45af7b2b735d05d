"""Detection and org-settings routes: parse, call the service, shape the response."""

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from customer_master.deps import Admin, AnyRole, SessionDep
from customer_master.detection import service, settings
from customer_master.detection.schemas import DetectRequest, DetectResult, OrgSettings, OrgSettingsPatch

router = APIRouter(prefix="/api/v1")


@router.post("/customers/detect", tags=["detection"], response_model=DetectResult)
async def detect_customer(body: DetectRequest, session: SessionDep, principal: AnyRole) -> DetectResult:
    """Which customer sent this order: candidates with their signals, and the pick when it is clear."""
    return await service.detect_customer(session, principal.org_id, body)


@router.api_route(
    "/customers/detect", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False, name="method_not_allowed"
)
async def detect_other_methods() -> None:
    """Without this, `GET /customers/detect` would reach `GET /customers/{id}` and fail on the id."""
    raise HTTPException(405, headers={"Allow": "POST"})


@router.get("/org/settings", tags=["org settings"], response_model=OrgSettings)
async def get_org_settings(session: SessionDep, principal: AnyRole) -> OrgSettings:
    return await settings.get_org_settings(session, principal.org_id)


@router.patch("/org/settings", tags=["org settings"], response_model=OrgSettings)
async def update_org_settings(body: OrgSettingsPatch, session: SessionDep, principal: Admin) -> OrgSettings:
    """A JSON Merge Patch of the settings; `null` returns a setting to its default."""
    return await settings.update_org_settings(session, principal.org_id, body)

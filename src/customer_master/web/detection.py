"""Detection try-out: a sender and/or an order's text in, the candidates with their signals and scores out.

Every role may detect (API.md §2); it reads only. It is still a POST with the CSRF token, like every form.
"""

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import Principal
from customer_master.deps import SessionDep
from customer_master.detection import service
from customer_master.detection.schemas import DetectRequest
from customer_master.detection.settings import detection_settings
from customer_master.web.core import CsrfChecked, WebRoute, errors_of, form_text, is_htmx, render
from customer_master.web.deps import WebUser

router = APIRouter(route_class=WebRoute)
FIELDS = ("from_email", "document_text", "hint_name", "hint_erp_customer_number")


async def _page(
    request: Request, session: AsyncSession, principal: Principal, status: int = 200, **extra: Any
) -> Response:
    settings = await detection_settings(session, principal.org_id)
    context = {"values": {}, "settings": settings, **extra}
    return render(request, "detect.html", context, status=status)


@router.get("/detect")
async def detect_page(request: Request, session: SessionDep, principal: WebUser) -> Response:
    return await _page(request, session, principal)


@router.post("/detect", dependencies=[CsrfChecked])
async def detect(request: Request, session: SessionDep, principal: WebUser) -> Response:
    form = await request.form()
    values = {name: form_text(form, name) for name in FIELDS}
    hint = {
        "name": values["hint_name"].strip() or None,
        "erp_customer_number": values["hint_erp_customer_number"].strip() or None,
    }
    body = {
        "from_email": values["from_email"].strip() or None,
        "document_text": values["document_text"] or None,
        "customer_hint": hint if any(hint.values()) else None,
    }
    try:
        detect_request = DetectRequest.model_validate(body)
    except ValidationError as exc:
        errors = {field.replace("customer_hint.", "hint_"): reasons for field, reasons in errors_of(exc).items()}
        if is_htmx(request):
            return render(request, "_detect_results.html", {"errors": errors}, status=422)
        return await _page(request, session, principal, 422, values=values, errors=errors)
    result = await service.detect_customer(session, principal.org_id, detect_request)
    context: dict[str, Any] = {"result": result, "asked": any(body.values())}
    if is_htmx(request):
        return render(request, "_detect_results.html", context)
    return await _page(request, session, principal, values=values, **context)

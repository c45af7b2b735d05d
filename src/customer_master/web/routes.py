"""The web UI under `/`: login, logout, language, static files; the pages come from the modules below.

Every route is left out of the OpenAPI document, which describes the `/api/v1` contract only.
"""

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from customer_master.auth import service as auth_service
from customer_master.deps import DatabaseDep
from customer_master.errors import AuthRequired, Forbidden, NotFound, RateLimited
from customer_master.web import admin, customers, detection, duplicates, imports, merge, webhooks
from customer_master.web.core import (
    SESSION_COOKIE,
    STATIC_DIR,
    CsrfChecked,
    WebRoute,
    form_text,
    jwt_secret,
    redirect,
    render,
    renew_csrf,
    safe_next,
)
from customer_master.web.deps import web_principal
from customer_master.web.i18n import LANGUAGE_COOKIE, LANGUAGES, gettext_for

router = APIRouter(route_class=WebRoute, include_in_schema=False)
STATIC_FILES = {path.name for path in STATIC_DIR.iterdir() if path.is_file()}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@router.get("/", dependencies=[Depends(web_principal)])
async def home() -> Response:
    return RedirectResponse("/customers", status_code=303)


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise NotFound("No such file")
    path = STATIC_DIR / name
    return FileResponse(
        path,
        media_type=STATIC_TYPES.get(path.suffix, "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "values": {}})


@router.post("/login", dependencies=[CsrfChecked])
async def login(request: Request, database: DatabaseDep) -> Response:
    """Checks the password in transactions of its own (`auth_service.login`: a failed attempt is recorded)."""
    form = await request.form()
    values = {name: form_text(form, name).strip() for name in ("org_slug", "email")}
    target = safe_next(form_text(form, "next"))
    _ = gettext_for(request)
    state = request.app.state
    try:
        token = await auth_service.login(
            database, jwt_secret(request), state.token_ttl_s, values["org_slug"], values["email"],
            form_text(form, "password"),
        )  # fmt: skip
    except RateLimited as exc:
        message = _("Too many failed logins. Try again in %(seconds)s seconds.") % {"seconds": exc.retry_after_s}
        return render(request, "login.html", {"next": target, "values": values, "message": message}, status=429)
    except Forbidden:
        message = _("This user is disabled.")
        return render(request, "login.html", {"next": target, "values": values, "message": message}, status=403)
    except AuthRequired:
        message = _("Wrong organisation, e-mail or password.")
        return render(request, "login.html", {"next": target, "values": values, "message": message}, status=401)
    renew_csrf(request)
    response = redirect(request, target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=state.token_ttl_s,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language", dependencies=[CsrfChecked])
async def choose_language(request: Request) -> Response:
    form = await request.form()
    language = form_text(form, "lang")
    response = redirect(request, safe_next(form_text(form, "next")))
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, samesite="lax", path="/")
    return response


router.include_router(customers.router)
router.include_router(merge.router)
router.include_router(detection.router)
router.include_router(duplicates.router)
router.include_router(imports.router)
router.include_router(admin.router)
router.include_router(webhooks.router)

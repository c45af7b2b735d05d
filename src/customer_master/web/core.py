"""The web UI's plumbing: session cookie, CSRF, templates, HTML error pages.

The UI is an ordinary caller of the services, on the API's request dependencies (`web/deps.py`: one
session per request, the caller from the session cookie, the role rule); it turns `AppError`s into pages
instead of JSON.
"""

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from babel.dates import format_datetime
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.models import ADMIN_ROLES, WRITER_ROLES
from customer_master.auth.tenancy import OrgId, Principal
from customer_master.db.faults import is_connection_lost
from customer_master.deps import run_in_function_scope
from customer_master.errors import AppError, AuthRequired, Forbidden, NotFound, ServiceUnavailable, field_errors
from customer_master.web.i18n import LANGUAGES, gettext_for, language_of, translations
from customer_master.web.labels import translated_labels

SESSION_COOKIE = "cm_session"
CSRF_COOKIE = "cm_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
# The largest form field (files aside): the import page keeps the failing rows' reasons in one.
MAX_FORM_FIELD_BYTES = 8 * 1024 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# --- errors -----------------------------------------------------------------------------------


class LoginRequired(AuthRequired):
    """No valid session: the browser goes to the login page (and comes back afterwards)."""


class CsrfRejected(Forbidden):
    message = "This form was not sent from this site's own page, or the page is too old. Reload it and try again."


def can_write(principal: Principal | None) -> bool:
    return principal is not None and principal.role in WRITER_ROLES


def is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.role in ADMIN_ROLES


class WebRoute(APIRoute):
    """Routes of the UI: failures become HTML pages (or, for htmx, a message in the page's flash area).

    The request's transaction ends inside (`run_in_function_scope`): an error rolls it back before it
    becomes a page, as an error of the API does before it becomes JSON.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await run_in_function_scope(handler, request)
            except AppError as exc:
                return error_response(request, exc)
            except RequestValidationError:  # only path and query parameters are declared: a bad id
                return error_response(request, NotFound("No such page"))
            except Exception as exc:  # what the driver raises outside a request transaction
                if not is_connection_lost(exc):
                    raise
                return unavailable_response(request)

        return handle


def unavailable_response(request: Request) -> Response:
    """The database is unreachable: 503 with a page that says so and offers to try again, not the API's JSON.

    Nothing of the request was applied (API.md §1), so trying again is safe: "try again" reloads the page for
    a GET; after a form post (or an htmx request) it leads back to the page the form was on.
    """
    _ = gettext_for(request)
    reading = request.method in ("GET", "HEAD")
    if reading:
        message = _("The database cannot be reached at the moment, so this page cannot be shown.")
    else:
        message = _("The database cannot be reached at the moment. Nothing you sent was saved.")
    context = {
        "title": _("Database unavailable"),
        "message": message,
        "status": 503,
        "retry_url": local_path(request) if reading and not is_htmx(request) else page_of_form(request),
    }
    headers = {"Cache-Control": "no-store"}
    if is_htmx(request):
        headers |= {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        return render(request, "_error.html", context, status=503, headers=headers)
    return render(request, "error.html", context, status=503, headers=headers)


def page_of_form(request: Request) -> str:
    """The page this request was sent from (htmx names it; a browser's Referer, on this site only), else the start."""
    for header in ("hx-current-url", "referer"):
        sent = urlsplit(request.headers.get(header, ""))
        if sent.netloc == request.url.netloc and sent.path:
            return safe_next(sent.path + ("?" + sent.query if sent.query else ""))
    return safe_next(None)


def error_response(request: Request, exc: AppError) -> Response:
    if isinstance(exc, ServiceUnavailable):
        return unavailable_response(request)
    if isinstance(exc, LoginRequired):
        target = "/login?next=" + quote(local_path(request), safe="/")
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Redirect": target})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    _ = gettext_for(request)
    titles = {
        403: _("Not allowed"),
        404: _("Not found"),
        409: _("Conflict"),
        412: _("Changed meanwhile"),
        413: _("Too large"),
        422: _("Invalid input"),
        429: _("Too many attempts"),
    }
    context = {"title": titles.get(exc.status, _("Error")), "message": exc.message, "status": exc.status}
    if is_htmx(request):
        headers = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        return render(request, "_error.html", context, status=exc.status, headers=headers)
    return render(request, "error.html", context, status=exc.status)


def jwt_secret(request: Request) -> str:
    """The secret that signs the session cookie's login token and the CSRF tokens."""
    secret: str = request.app.state.jwt_secret
    return secret


# --- CSRF: a signed double-submit token -----------------------------------------------------------
# The cookie holds a random nonce (HttpOnly, SameSite=Lax); forms carry HMAC(secret, nonce) in a hidden
# field and htmx sends it as a header. Another site can neither read the cookie nor compute the HMAC.


def _sign(request: Request, nonce: str) -> str:
    return hmac.new(jwt_secret(request).encode(), b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def _csrf_nonce(request: Request) -> str:
    nonce = getattr(request.state, "csrf_nonce", None) or request.cookies.get(CSRF_COOKIE)
    if not nonce or not 16 <= len(nonce) <= 100:
        nonce = secrets.token_urlsafe(32)
        request.state.new_csrf_nonce = nonce
    request.state.csrf_nonce = nonce
    return nonce


def csrf_token(request: Request) -> str:
    return _sign(request, _csrf_nonce(request))


def renew_csrf(request: Request) -> None:
    """A fresh nonce (at login), so a token seen before the login is worthless after it."""
    request.state.csrf_nonce = secrets.token_urlsafe(32)
    request.state.new_csrf_nonce = request.state.csrf_nonce


async def check_csrf(request: Request) -> None:
    """Every state-changing request must carry the token of this browser's nonce."""
    needs_form = request.headers.get(CSRF_HEADER) is None and not is_cross_site(request)
    verify_csrf(request, await request.form(max_part_size=MAX_FORM_FIELD_BYTES) if needs_form else None)


def is_cross_site(request: Request) -> bool:
    return request.headers.get("sec-fetch-site") == "cross-site"


def verify_csrf(request: Request, form: Mapping[str, Any] | None = None) -> None:
    """The token htmx sends as a header, else the form's hidden field (for a route that reads its own body)."""
    if is_cross_site(request):
        raise CsrfRejected()
    nonce = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and form is not None:
        sent = form_text(form, CSRF_FIELD)
    if not nonce or not sent or not hmac.compare_digest(sent.encode(), _sign(request, nonce).encode()):
        raise CsrfRejected()


CsrfChecked = Depends(check_csrf)


# --- pages --------------------------------------------------------------------------------------


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def local_path(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def safe_next(target: str | None, default: str = "/customers") -> str:
    """Only a path on this site (no `//host`, no scheme), so the login cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


@cache
def static_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"/static/{name}?v={static_version(name)}"


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["static_url"] = static_url
    env.globals["languages"] = LANGUAGES
    env.globals.update(translated_labels(translations(language).gettext))
    env.filters["datetime"] = lambda value: format_datetime(value, "short", locale=language) if value else "–"
    return env


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    language = language_of(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    values = {
        "request": request,
        "lang": language,
        "principal": principal,
        "can_write": can_write(principal),
        "is_admin": is_admin(principal),
        "csrf_token": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "current_path": local_path(request),
        "errors": {},
        **(context or {}),
    }
    body = environment(language).get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
    response.headers["Vary"] = "Cookie, Accept-Language, HX-Request"
    if principal is not None:
        response.headers["Cache-Control"] = "no-store"
    set_csrf_cookie(request, response)
    return response


def set_csrf_cookie(request: Request, response: Response) -> None:
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce:
        secure = request.url.scheme == "https"
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="lax", secure=secure, path="/")


def redirect(request: Request, url: str) -> Response:
    """After a successful form post: htmx navigates with `HX-Redirect`, a plain form with a 303."""
    response: Response
    if is_htmx(request):
        response = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    set_csrf_cookie(request, response)
    return response


# --- forms --------------------------------------------------------------------------------------

FieldErrors = dict[str, list[str]]


def add_error(errors: FieldErrors, field: str | None, reason: str) -> None:
    errors.setdefault(field or "", []).append(reason)


def errors_of(exc: AppError | ValidationError, prefix: str = "") -> FieldErrors:
    """The API's field errors (`billing_address.country` → its reasons), for messages beside the inputs."""
    errors: FieldErrors = {}
    if isinstance(exc, ValidationError):
        for error in field_errors(exc.errors()):
            add_error(errors, prefix + error["field"] if error["field"] else None, error["reason"])
        return errors
    listed = exc.details.get("errors")
    if isinstance(listed, list) and listed:
        for error in listed:
            field = error.get("field")
            add_error(errors, prefix + field if field else None, str(error.get("reason")))
    elif exc.details.get("field"):
        add_error(errors, prefix + str(exc.details["field"]), exc.message)
    else:
        add_error(errors, None, exc.message)
    return errors


def status_of(exc: AppError | ValidationError) -> int:
    """The status of a form sent back with its errors: the error's own, 422 for values the schema refused."""
    return exc.status if isinstance(exc, AppError) else 422


@dataclass(frozen=True)
class ListPage:
    """A page that lists the org's objects above the form that adds one (users, API tokens, webhooks).

    Shown as it is, again with the form's errors and the values sent (`values=`), or with what was just done
    (`message=`, `created=`, …: every keyword goes to the template).
    """

    template: str
    name: str  # the list's name in the template
    load: Callable[[AsyncSession, OrgId], Awaitable[Sequence[Any]]]
    defaults: Mapping[str, str]  # the form's values before anything is sent
    fixed: Mapping[str, Any] = field(default_factory=dict)  # what else the template needs, the same each time

    async def render(
        self,
        request: Request,
        session: AsyncSession,
        principal: Principal,
        status: int = 200,
        errors: FieldErrors | None = None,
        **extra: Any,
    ) -> Response:
        items = await self.load(session, principal.org_id)
        context = {self.name: items, **self.fixed, "values": self.defaults, "errors": errors or {}, **extra}
        return render(request, self.template, context, status=status)


def form_text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such object") from None

"""The `customer-master` command: serve, migrate, and org / user / token administration.

The heavy modules (SQLAlchemy, alembic, the app, uvicorn, the services; `auth.service` hashes a password
when imported) are imported inside the commands that use them, so that `--help`, a mistyped option and
every command start without paying for all of them (that is about two seconds).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer
from pydantic import ValidationError  # typer validates with pydantic: loaded anyway

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from customer_master.auth.models import Role
    from customer_master.auth.schemas import UserCreate
    from customer_master.detection.schemas import DetectResult
    from customer_master.merge.schemas import MergeResult

# `auth.models.Role`'s values, spelled out so that parsing the command line does not load SQLAlchemy (the
# models' module); tests/test_cli.py checks that they are the same.
RoleName = Literal["VIEWER", "OPS", "INTEGRATOR", "ADMIN"]

# The options that several commands take, declared once.
OrgOption = Annotated[str, typer.Option("--org", help="The org's slug")]
RoleOption = Annotated[RoleName, typer.Option("--role", help="VIEWER, OPS, INTEGRATOR or ADMIN", case_sensitive=False)]

T = TypeVar("T")

app = typer.Typer(
    help="Customer Master: customer master data for B2B wholesalers.\n\n"
    "Reads DATABASE_URL (a libpq URL); without it, an embedded PostgreSQL lives in CM_DATA_DIR "
    "(default ./.customer-master).",
    no_args_is_help=True,
    add_completion=False,
)
org_app = typer.Typer(help="Create organisations (tenants).", no_args_is_help=True)
user_app = typer.Typer(help="Create users in an org.", no_args_is_help=True)
token_app = typer.Typer(help="Create API tokens for integrations.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


EXIT_DATABASE_UNAVAILABLE = 3


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def database_url() -> str:
    """The database, migrated to the newest schema (safe while a server runs on it)."""

    from customer_master.config import get_settings
    from customer_master.db.faults import is_connection_lost
    from customer_master.db.migrate import upgrade_to_head
    from customer_master.db.session import resolve_database_url
    from customer_master.stopping import exit_normally_on_sigterm, run_stoppable

    exit_normally_on_sigterm()
    try:
        url = run_stoppable(resolve_database_url(get_settings()))
        upgrade_to_head(url)
    except Exception as exc:
        if not (is_connection_lost(exc) or isinstance(exc, OSError)):
            raise
        fail(f"the database is unavailable: {exc}", EXIT_DATABASE_UNAVAILABLE)
    return url


def in_transaction(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction: committed when it succeeds, rolled back when it fails (or stopped)."""
    from customer_master.db.session import Database
    from customer_master.errors import AppError
    from customer_master.stopping import run_stoppable

    async def run() -> T:
        database = Database(url, pool_size=1)
        try:
            async with database.transaction() as session:
                return await work(session)
        finally:
            await database.dispose()

    try:
        return run_stoppable(run())
    except ValidationError as exc:
        fail(_describe(exc))
    except AppError as exc:
        errors = exc.details.get("errors")
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) if errors else ""
        fail(f"{exc.message}" + (f" ({detail})" if detail and detail not in exc.message else ""))
    raise AssertionError("unreachable")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Create the demo org (once) and print its logins")] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes, each with its own connection pool; about one per CPU core")
    ] = 1,
) -> None:
    """Migrate the database, then serve the API (and web UI) until stopped.

    SIGTERM or SIGINT (Ctrl+C) stops it cleanly: no new connections are taken, requests in flight get up
    to 10 s to finish, and the process exits 0 through the normal exit (its atexit hooks stop the embedded
    PostgreSQL when this was the last process using it).
    """

    import uvicorn

    from customer_master.app import create_app
    from customer_master.config import get_settings, resolve_jwt_secret
    from customer_master.demo import DEMO_PASSWORD, DEMO_SLUG, DEMO_USERS, ensure_demo_org

    # While uvicorn serves, it handles both signals itself; once it has stopped it restores these handlers
    # and raises the signal again. SIGTERM's default would end the process there and then, without atexit
    # hooks and with a non-zero status; this handler turns it into a normal exit with status 0. So does a
    # signal before uvicorn has taken over (startup, migration).
    def exit_0(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, exit_0)
    grace_s = 10  # for requests in flight after a stop signal; then they are cancelled

    settings = get_settings()
    try:
        jwt_secret = resolve_jwt_secret(settings)
    except RuntimeError as exc:
        fail(str(exc))
    url = database_url()
    if demo:
        in_transaction(url, ensure_demo_org)
    typer.echo(f"Customer Master on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if demo:
        typer.echo(f"Demo logins (org '{DEMO_SLUG}', password '{DEMO_PASSWORD}'):")
        for email, role in DEMO_USERS:
            typer.echo(f"  {role.value:<11} {email}")
    sys.stdout.flush()
    if workers == 1:
        application = create_app(url, jwt_secret, settings.token_ttl_s, settings.db_pool_size)
        uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=grace_s)
        return
    # Each worker process builds its app from the environment: hand it this database and secret.
    os.environ.update({"DATABASE_URL": url, "CM_JWT_SECRET": jwt_secret})
    uvicorn.run(
        "customer_master.app:create_app_from_environment",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=60,  # a worker imports the whole app first: seconds on a busy machine
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=grace_s,  # each worker's; the parent waits for its workers to exit
    )


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest version."""
    database_url()
    typer.echo("database migrated")


@app.command()
def deliver() -> None:
    """Run the webhook delivery worker alone (`serve` runs one too), until stopped.

    Any number of workers, on any machines, share the endpoints: each endpoint is delivered by one at a
    time. SIGTERM or SIGINT stops it (exit 0); an attempt in flight is cut off and sent again later.
    """
    import asyncio

    from customer_master.db.session import Database
    from customer_master.webhooks.worker import DeliveryWorker

    def exit_0(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, exit_0)
    url = database_url()

    async def run() -> None:
        database = Database(url, pool_size=4)
        worker = DeliveryWorker(database)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop_signal, stopped.set)
        worker.start()
        typer.echo("delivering webhooks (stop with Ctrl+C)")
        sys.stdout.flush()
        try:
            await stopped.wait()
        finally:
            await worker.stop()
            await database.dispose()

    asyncio.run(run())


@org_app.command("create")
def org_create(
    slug: Annotated[str, typer.Option(help="Short name used at login, e.g. acme")],
    name: Annotated[str, typer.Option(help="Display name, e.g. 'ACME GmbH'")],
    admin_email: Annotated[str, typer.Option(help="E-mail of the org's first ADMIN")],
    admin_password: Annotated[str | None, typer.Option(help="At least 12 characters; generated when left out")] = None,
) -> None:
    """Create an org with its first ADMIN user."""
    from customer_master.auth import service as auth_service
    from customer_master.auth.models import Role
    from customer_master.auth.tenancy import OrgId

    admin, generated = _new_user(email=admin_email, name=None, role=Role.ADMIN, password=admin_password)

    async def work(session: AsyncSession) -> str:
        org = await auth_service.create_org(session, slug, name)
        await auth_service.create_user(session, OrgId(org.id), admin)
        return str(org.id)

    org_id = in_transaction(database_url(), work)
    typer.echo(f"org {slug} created (id {org_id}); admin {admin.email}")
    _echo_generated(generated)


@user_app.command("create")
def user_create(
    org: OrgOption,
    email: Annotated[str, typer.Option(help="The user's e-mail (login)")],
    role: RoleOption,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    password: Annotated[str | None, typer.Option(help="At least 12 characters; generated when left out")] = None,
) -> None:
    """Create a user in an org."""
    from customer_master.auth import service as auth_service
    from customer_master.auth.models import Role

    data, generated = _new_user(email=email, name=name, role=Role(role), password=password)

    async def work(session: AsyncSession) -> str:
        org_id = await auth_service.org_id_by_slug(session, org)
        return str((await auth_service.create_user(session, org_id, data)).id)

    user_id = in_transaction(database_url(), work)
    typer.echo(f"user {data.email} created in {org} as {data.role.value} (id {user_id})")
    _echo_generated(generated)


@token_app.command("create")
def token_create(
    org: OrgOption,
    name: Annotated[str, typer.Option(help="What the token is for, e.g. erp-nightly")],
    role: RoleOption,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    from customer_master.auth import service as auth_service
    from customer_master.auth.models import Role
    from customer_master.auth.schemas import ApiTokenCreate

    try:
        data = ApiTokenCreate(name=name, role=Role(role))
    except ValidationError as exc:
        fail(_describe(exc))

    async def work(session: AsyncSession) -> str:
        org_id = await auth_service.org_id_by_slug(session, org)
        return (await auth_service.create_api_token(session, org_id, data))[1]

    token = in_transaction(database_url(), work)
    typer.echo(f"token: {token}")


@app.command("import")
def import_customers(
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8 or Windows-1252; ',', ';' or tab)")],
    org: OrgOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count, write nothing")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout")] = False,
) -> None:
    """Import customers from CSV, upserting by ERP number. Exit 0: all rows applied; 1: some rows
    failed; 2: the file was rejected or the org does not exist."""
    from customer_master.imports.commands import run_import

    raise typer.Exit(run_import(database_url(), file, org, dry_run=dry_run, as_json=json_output))


@app.command("export")
def export_customers(
    org: OrgOption,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout")] = None,
    delimiter: Annotated[str, typer.Option(help="',' (default), ';' or a tab")] = ",",
) -> None:
    """Export every customer of the org as CSV in the import format (one row per contact)."""
    from customer_master.imports.commands import run_export

    raise typer.Exit(run_export(database_url(), org, output, delimiter))


@app.command()
def detect(
    org: OrgOption,
    from_email: Annotated[str | None, typer.Option(help="The sender, e.g. '\"Max\" <einkauf@muster.de>'")] = None,
    text_file: Annotated[Path | None, typer.Option(help="The order's text ('-' reads standard input)")] = None,
    name: Annotated[str | None, typer.Option(help="A company name, compared instead of the text's first lines")] = None,
) -> None:
    """Which customer sent an order: prints the detection result (as the API answers it) as JSON."""
    from customer_master.auth import service as auth_service
    from customer_master.detection import service as detection_service
    from customer_master.detection.schemas import CustomerHint, DetectRequest

    try:
        request = DetectRequest(
            from_email=from_email,
            document_text=_read_text(text_file) if text_file else None,
            customer_hint=CustomerHint(name=name) if name else None,
        )
    except ValidationError as exc:
        fail(_describe(exc))

    async def work(session: AsyncSession) -> DetectResult:
        org_id = await auth_service.org_id_by_slug(session, org)
        return await detection_service.detect_customer(session, org_id, request)

    typer.echo(in_transaction(database_url(), work).model_dump_json(indent=2))


@app.command()
def merge(
    org: OrgOption,
    survivor: Annotated[str, typer.Option(help="The id of the customer that stays")],
    merged: Annotated[list[str], typer.Argument(help="The ids of the customers merged into it, in order")],
    pick: Annotated[
        list[str] | None, typer.Option(help="FIELD=ID: take this field from that customer (repeatable)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the result, write nothing")] = False,
) -> None:
    """Merge customers into a survivor (API.md §12); prints the result (as the API answers it) as JSON."""
    from customer_master.auth import service as auth_service
    from customer_master.history.context import Actor
    from customer_master.merge import service as merge_service
    from customer_master.merge.schemas import MergeRequest

    picks = dict(item.partition("=")[::2] for item in pick or ())
    if any(not field or not customer_id for field, customer_id in picks.items()):
        fail("--pick takes FIELD=ID, e.g. --pick billing_address=<customer id>")
    try:
        request = MergeRequest.model_validate(
            {"survivor_id": survivor, "merged_ids": merged, "pick": picks, "dry_run": dry_run}
        )
    except ValidationError as exc:
        fail(_describe(exc))

    async def work(session: AsyncSession) -> MergeResult:
        org_id = await auth_service.org_id_by_slug(session, org)
        return await merge_service.merge_customers(
            session, org_id, request, actor=Actor.command("merge"), request_id=None
        )

    typer.echo(in_transaction(database_url(), work).model_dump_json(indent=2))


def _read_text(path: Path) -> str:
    """A text file as UTF-8 (with or without BOM), else as Windows-1252; `-` is standard input."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _new_user(email: str, name: str | None, role: Role, password: str | None) -> tuple[UserCreate, str | None]:
    """A user's fields checked with the API's rules before the database is touched, and the password
    generated for them when none was given (None otherwise), for `_echo_generated` once the user exists."""
    from customer_master.auth import security
    from customer_master.auth.schemas import UserCreate

    chosen = password or security.generate_password()
    try:
        data = UserCreate(email=email, name=name, role=role, password=chosen)
    except ValidationError as exc:
        fail(_describe(exc))
        raise
    return data, chosen if password is None else None


def _echo_generated(password: str | None) -> None:
    """A generated password, printed this once: only its hash is stored."""
    if password is not None:
        typer.echo(f"password: {password}")


def _describe(exc: ValidationError) -> str:
    from customer_master.errors import field_errors

    return "; ".join(f"{error['field']}: {error['reason']}" for error in field_errors(exc.errors()))

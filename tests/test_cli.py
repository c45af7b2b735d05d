"""The `customer-master` command (API.md §9), run as a user runs it: a subprocess on the test database.

The help texts are checked in this process (Typer's CliRunner), after one check of the installed command's
`--help`; the orgs that the user and token commands need are made directly in the database (`make_org`).
"""

import os
import re
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import get_args

import httpx
import pytest
from typer.testing import CliRunner

from customer_master import cli
from customer_master.auth.models import Role
from tests.conftest import PASSWORD, Db, assert_error, make_org

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
    env |= {
        "DATABASE_URL": database_url,  # a plain libpq URL, as an operator writes it
        "CM_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXECUTABLE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def ok(env: dict[str, str], *args: str) -> str:
    result = run(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed(label: str, stdout: str) -> str:
    """The value of the `label: value` line a command prints once."""
    (value,) = re.findall(rf"^{label}: (\S+)$", stdout, flags=re.MULTILINE)
    return value


def new_slug() -> str:
    return "cli-" + secrets.token_hex(4)


def login(client: httpx.Client, slug: str, email: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"org_slug": slug, "email": email, "password": password})


def test_the_cli_knows_every_role() -> None:
    assert set(get_args(cli.RoleName)) == {role.value for role in Role}


def test_the_cli_starts_without_the_heavy_modules(cli_env: dict[str, str]) -> None:
    """`--help` and a mistyped option stay quick: the commands import the app, SQLAlchemy, etc. when they run."""
    heavy = ["sqlalchemy", "alembic", "asyncpg", "fastapi", "uvicorn", "argon2", "customer_master.auth.service"]
    code = f"import sys, customer_master.cli; print(sorted(set({heavy!r}) & set(sys.modules)))"

    result = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_migrate(cli_env: dict[str, str], db: Db) -> None:
    stdout = ok(cli_env, "migrate")

    assert "migrated" in stdout
    (version,) = db.fetch("SELECT version_num FROM alembic_version")
    assert version[0]
    assert ok(cli_env, "migrate")  # again: nothing to do, still fine


def test_org_create_with_a_password_makes_an_admin_who_can_log_in(
    cli_env: dict[str, str], client: httpx.Client, db: Db
) -> None:
    slug = new_slug()

    stdout = ok(cli_env, "org", "create", "--slug", slug, "--name", " Müller & Söhne GmbH ",
                "--admin-email", f"Admin@{slug}.de", "--admin-password", PASSWORD)  # fmt: skip

    assert "password:" not in stdout
    assert PASSWORD not in stdout
    response = login(client, slug, f"admin@{slug}.de", PASSWORD)
    assert response.status_code == 200, response.text
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}).json()
    assert me["org"]["slug"] == slug
    assert me["org"]["name"] == "Müller & Söhne GmbH"
    assert me["user"]["role"] == "ADMIN"
    assert me["user"]["email"] == f"admin@{slug}.de"
    assert db.fetch("SELECT count(*) FROM app_user WHERE org_id = :id", id=me["org"]["id"])[0][0] == 1


def test_org_create_without_a_password_prints_a_generated_one(cli_env: dict[str, str], client: httpx.Client) -> None:
    slug = new_slug()

    stdout = ok(cli_env, "org", "create", "--slug", slug, "--name", "Gen GmbH", "--admin-email", f"a@{slug}.de")

    password = printed("password", stdout)
    assert len(password) >= 12
    assert login(client, slug, f"a@{slug}.de", password).status_code == 200
    assert_error(login(client, slug, f"a@{slug}.de", PASSWORD), 401, "AUTH_REQUIRED")


def test_org_create_with_a_taken_slug_fails_and_changes_nothing(cli_env: dict[str, str], db: Db) -> None:
    existing = make_org(db)
    slug = existing.slug

    result = run(cli_env, "org", "create", "--slug", slug, "--name", "Again", "--admin-email", "other@x.de")

    assert result.returncode != 0
    assert slug in result.stderr
    assert "Traceback" not in result.stderr
    assert "created" not in result.stdout
    (org,) = db.fetch("SELECT id, name FROM org WHERE slug = :slug", slug=slug)
    assert org.name == f"Org {slug}"
    assert db.fetch("SELECT email FROM app_user WHERE org_id = :id", id=org.id) == [(existing.admin_email,)]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--slug", "Bad Slug!", "--name", "X", "--admin-email", "a@x.de", "--admin-password", PASSWORD], "slug"),
        (["--slug", "{slug}", "--name", "X", "--admin-email", "a@x.de", "--admin-password", "short"], "password"),
        (["--slug", "{slug}", "--name", "X", "--admin-email", "not-an-email", "--admin-password", PASSWORD], "email"),
        (["--slug", "{slug}", "--name", "  ", "--admin-email", "a@x.de", "--admin-password", PASSWORD], "name"),
    ],
)
def test_org_create_rejects_bad_input(cli_env: dict[str, str], db: Db, args: list[str], mentions: str) -> None:
    slug = new_slug()

    result = run(cli_env, "org", "create", *[arg.format(slug=slug) for arg in args])

    assert result.returncode != 0
    assert mentions in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert db.fetch("SELECT id FROM org WHERE slug = :slug", slug=slug) == []


def test_user_create_with_and_without_a_password(cli_env: dict[str, str], client: httpx.Client, db: Db) -> None:
    slug = make_org(db).slug

    given = ok(cli_env, "user", "create", "--org", slug, "--email", f"ops@{slug}.de", "--role", "OPS",
               "--name", "Olga", "--password", "another-long-password")  # fmt: skip
    generated = ok(cli_env, "user", "create", "--org", slug, "--email", f"int@{slug}.de", "--role", "integrator")

    assert "password:" not in given
    ops = login(client, slug, f"ops@{slug}.de", "another-long-password")
    assert ops.status_code == 200
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {ops.json()['access_token']}"}).json()
    assert me["user"]["role"] == "OPS"
    assert me["user"]["name"] == "Olga"
    integrator = login(client, slug, f"int@{slug}.de", printed("password", generated))
    assert integrator.status_code == 200
    token = integrator.json()["access_token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["user"]["role"] == "INTEGRATOR"


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--org", "{slug}", "--email", "u@x.de", "--role", "OPS", "--password", "short-11-ch"], "password"),
        (["--org", "no-such-org-{slug}", "--email", "u@x.de", "--role", "OPS", "--password", PASSWORD], "org"),
        (["--org", "{slug}", "--email", "{admin}", "--role", "OPS", "--password", PASSWORD], "exists"),
        (["--org", "{slug}", "--email", "u@x.de", "--role", "BOSS", "--password", PASSWORD], "role"),
        (["--org", "{slug}", "--email", "nope", "--role", "OPS", "--password", PASSWORD], "email"),
    ],
)
def test_user_create_rejects_bad_input(cli_env: dict[str, str], db: Db, args: list[str], mentions: str) -> None:
    org = make_org(db)
    slug = org.slug

    result = run(cli_env, "user", "create", *[arg.format(slug=slug, admin=org.admin_email) for arg in args])

    assert result.returncode != 0
    assert mentions in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    users = db.fetch("SELECT u.email FROM app_user u JOIN org o ON o.id = u.org_id WHERE o.slug = :slug", slug=slug)
    assert users == [(org.admin_email,)]


def test_token_create_prints_a_token_that_works_on_the_server(
    cli_env: dict[str, str], client: httpx.Client, db: Db
) -> None:
    slug = make_org(db).slug

    stdout = ok(cli_env, "token", "create", "--org", slug, "--name", "erp-nightly", "--role", "INTEGRATOR")

    token = printed("token", stdout)
    headers = {"Authorization": f"Bearer {token}"}
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["user"] is None
    assert me["token"]["name"] == "erp-nightly"
    assert me["token"]["role"] == "INTEGRATOR"
    assert me["org"]["slug"] == slug
    assert client.get("/api/v1/customers", headers=headers).status_code == 200
    assert_error(client.get("/api/v1/users", headers=headers), 403, "FORBIDDEN")


def test_token_create_for_an_unknown_org_fails(cli_env: dict[str, str]) -> None:
    result = run(cli_env, "token", "create", "--org", "no-such-org", "--name", "x", "--role", "VIEWER")

    assert result.returncode != 0
    assert "no-such-org" in result.stderr
    assert "token:" not in result.stdout


COMMANDS = [
    [],
    ["serve"],
    ["migrate"],
    ["org"],
    ["org", "create"],
    ["user"],
    ["user", "create"],
    ["token"],
    ["token", "create"],
    ["import"],
    ["export"],
    ["detect"],
    ["deliver"],
    ["merge"],
]


@pytest.fixture(scope="module")
def top_help(cli_env: dict[str, str]) -> str:
    """`customer-master --help`, printed by the installed command."""
    stdout = ok(cli_env, "--help")
    assert "Usage:" in stdout
    return stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "customer-master")
def test_help_of_every_command(cli_env: dict[str, str], top_help: str, command: list[str]) -> None:
    if command:
        assert re.search(rf"^\W*{command[0]}\s", top_help, flags=re.MULTILINE), f"no `{command[0]}`"

    result = CliRunner().invoke(cli.app, [*command, "--help"], prog_name="customer-master", env=cli_env)
    assert result.exit_code == 0, result.output
    stdout = result.stdout

    assert "Usage:" in stdout
    assert "customer-master " + " ".join(command) in " ".join(stdout.split())


@pytest.mark.parametrize(
    "command",
    [
        ("migrate",),
        ("org", "create", "--slug", "x", "--name", "X", "--admin-email", "a@x.de"),
        ("export", "--org", "x"),
    ],
)
def test_without_a_database_commands_say_so_and_exit_3(cli_env: dict[str, str], command: tuple[str, ...]) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    with port:
        env = cli_env | {"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{port.getsockname()[1]}/nothing"}
        result = run(env, *command)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("error: the database is unavailable"), result.stderr
    assert "Traceback" not in result.stderr

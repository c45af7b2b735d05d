"""`customer-master detect` (API.md §9): the §7 result as JSON, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import OrgContext
from tests.detection.helpers import add_customer

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
    return env | {"DATABASE_URL": database_url, "CM_DATA_DIR": str(tmp_path_factory.mktemp("cli-detect"))}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, "detect", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_detect_prints_the_result_as_json(
    client: httpx.Client, org: OrgContext, cli_env: dict[str, str], tmp_path: Path
) -> None:
    muster = add_customer(client, org, "Muster GmbH", "4711", ("einkauf@muster.de",))
    order = tmp_path / "order.txt"
    order.write_text("Bestellung\nKundennr.: 4711\n", encoding="utf-8")
    result = run(cli_env, "--org", org.slug, "--from-email", '"Max" <Einkauf@Muster.DE>', "--text-file", str(order))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "AUTO_SELECTED"
    assert answer["selected_customer_id"] == muster
    (candidate,) = answer["candidates"]
    assert candidate["score"] == 0.999
    assert [s["signal"] for s in candidate["signals"]] == ["S1_EMAIL", "S4_CUSTOMER_NUMBER"]


def test_detect_by_name_and_from_standard_input(client: httpx.Client, org: OrgContext, cli_env: dict[str, str]) -> None:
    muster = add_customer(client, org, "Schraubenhandel Muster GmbH")
    by_name = run(cli_env, "--org", org.slug, "--name", "Schraubenhandel Muster AG")
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["candidates"][0]["customer_id"] == muster
    from_stdin = run(cli_env, "--org", org.slug, "--text-file", "-", stdin="Schraubenhandel Muster\n")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["candidates"][0]["customer_id"] == muster


def test_windows_1252_text_file(client: httpx.Client, org: OrgContext, cli_env: dict[str, str], tmp_path: Path) -> None:
    mueller = add_customer(client, org, "Bäckerei Müller")
    order = tmp_path / "order.txt"
    order.write_bytes("Bäckerei Müller\n".encode("cp1252"))
    result = run(cli_env, "--org", org.slug, "--text-file", str(order))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["candidates"][0]["customer_id"] == mueller


def test_nothing_found_is_not_an_error(org: OrgContext, cli_env: dict[str, str]) -> None:
    result = run(cli_env, "--org", org.slug, "--from-email", "nobody@nowhere.de")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "NOT_FOUND", "selected_customer_id": None, "candidates": []}


def test_unknown_org_and_missing_file_fail(org: OrgContext, cli_env: dict[str, str], tmp_path: Path) -> None:
    unknown = run(cli_env, "--org", "no-such-org", "--from-email", "a@b.de")
    assert unknown.returncode != 0
    assert "no-such-org" in unknown.stderr
    assert unknown.stdout == ""
    missing = run(cli_env, "--org", org.slug, "--text-file", str(tmp_path / "missing.txt"))
    assert missing.returncode != 0
    assert "missing.txt" in missing.stderr

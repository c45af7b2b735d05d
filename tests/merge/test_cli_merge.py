"""`customer-master merge` (API.md §9): the §12 merge from the command line, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from customer_master.auth.models import Role
from tests.conftest import OrgContext, create_customer

EXECUTABLE = str(Path(sys.executable).with_name("customer-master"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CM_")}
    return env | {"DATABASE_URL": database_url, "CM_DATA_DIR": str(tmp_path_factory.mktemp("cli-merge"))}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, "merge", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_merge_from_the_command_line_dry_run_then_for_real(
    client: httpx.Client, org: OrgContext, cli_env: dict[str, str]
) -> None:
    survivor = create_customer(client, org, name="Muster GmbH", erp_customer_number="C-1")
    merged = create_customer(client, org, name="Muster AG", erp_customer_number="C-2", default_currency="CHF")
    args = ("--org", org.slug, "--survivor", survivor["id"], merged["id"], "--pick", f"default_currency={merged['id']}")

    dry = run(cli_env, *args, "--dry-run")

    assert dry.returncode == 0, dry.stderr
    preview = json.loads(dry.stdout)
    assert preview["merge_id"] is None
    assert preview["customer"]["default_currency"] == "CHF"
    assert client.get(f"/api/v1/customers/{merged['id']}", headers=org.headers()).status_code == 200

    result = run(cli_env, *args)

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["customer"]["erp_aliases"] == ["C-2"]
    gone = client.get(f"/api/v1/customers/{merged['id']}", headers=org.headers())
    assert gone.json()["error"]["details"]["merged_into"] == survivor["id"]
    entry = client.get(f"/api/v1/customers/{survivor['id']}/history", headers=org.headers(Role.VIEWER)).json()
    merged_entry = entry["items"][0]
    assert merged_entry["type"] == "customer.merged"
    assert merged_entry["source"] == "merge"
    assert merged_entry["actor"] == {"type": "system", "id": None, "label": "customer-master merge"}
    assert merged_entry["request_id"] is None
    assert merged_entry["merge_id"] == answer["merge_id"]


def test_refusals_name_the_problem(client: httpx.Client, org: OrgContext, cli_env: dict[str, str]) -> None:
    survivor = create_customer(client, org, erp_customer_number="D-1")

    not_an_id = run(cli_env, "--org", org.slug, "--survivor", survivor["id"], "nope")
    same = run(cli_env, "--org", org.slug, "--survivor", survivor["id"], survivor["id"])
    bad_pick = run(cli_env, "--org", org.slug, "--survivor", survivor["id"], survivor["id"], "--pick", "name")
    no_org = run(cli_env, "--org", "no-such-org", "--survivor", survivor["id"], survivor["id"])

    assert not_an_id.returncode == 1
    assert "merged_ids.0" in not_an_id.stderr
    assert same.returncode == 1
    assert "must not contain the survivor" in same.stderr
    assert bad_pick.returncode == 1
    assert "FIELD=ID" in bad_pick.stderr
    assert no_org.returncode == 1
    assert "no-such-org" in no_org.stderr

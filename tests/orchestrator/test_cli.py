"""The `quorum` command line against a real database."""

import sqlalchemy as sa
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.db import make_engine
from orchestrator.models import ApiKey, Vendor
from orchestrator.services.keys import hash_key


def run(database_url, *args):
    result = CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url})
    return result


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(database_url):
    result = run(database_url, "keys", "create", "--role", "vendor", "--vendor", "cli-acme")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("qk_")
    engine = make_engine(database_url)
    with engine.connect() as conn:
        key = conn.execute(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one()
        vendor = conn.execute(sa.select(Vendor).where(Vendor.id == key.vendor_id)).one()
        stored_text = " ".join(str(v) for v in key)
    engine.dispose()
    assert key.role == "vendor" and vendor.name == "cli-acme"
    assert secret not in stored_text


def test_keys_create_refuses_bad_combinations(database_url):
    assert run(database_url, "keys", "create", "--role", "vendor").exit_code == 2
    assert run(database_url, "keys", "create", "--role", "ops", "--vendor", "x").exit_code == 2
    assert run(database_url, "keys", "create", "--role", "boss").exit_code == 2


def test_keys_list_and_revoke(database_url):
    created = run(database_url, "keys", "create", "--role", "finance", "--name", "books")
    key_id = created.stderr.split("key ")[1].split()[0]
    assert f"{key_id}\t" in run(database_url, "keys", "list").stdout
    assert run(database_url, "keys", "revoke", key_id).exit_code == 0
    listing = run(database_url, "keys", "list").stdout.splitlines()
    (row,) = [entry for entry in listing if entry.startswith(f"{key_id}\t")]
    assert "revoked" in row


def test_keys_rotate_prints_the_new_key_and_when_the_old_one_stops(database_url):
    created = run(database_url, "keys", "create", "--role", "vendor", "--vendor", "cli-rot")
    old_id = int(created.stderr.split("key ")[1].split()[0])
    rotated = run(database_url, "keys", "rotate", str(old_id), "--overlap", "30m")
    assert rotated.exit_code == 0, rotated.output
    secret = rotated.stdout.strip()
    assert secret.startswith("qk_") and "stops working at" in rotated.stderr
    engine = make_engine(database_url)
    with engine.connect() as conn:
        old = conn.execute(sa.select(ApiKey).where(ApiKey.id == old_id)).one()
        new = conn.execute(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).one()
    engine.dispose()
    assert (new.role, new.vendor_id) == ("vendor", old.vendor_id) and new.expires_at is None
    window = old.expires_at - old.created_at
    assert 29 * 60 < window.total_seconds() < 31 * 60
    assert f"{old_id}\t" in run(database_url, "keys", "list").stdout
    assert run(database_url, "keys", "rotate", str(old_id), "--overlap", "soon").exit_code == 2
    run(database_url, "keys", "revoke", str(old_id))
    refused = run(database_url, "keys", "rotate", str(old_id))
    assert refused.exit_code == 2 and "revoked" in refused.output

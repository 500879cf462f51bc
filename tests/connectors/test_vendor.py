"""The vendor connector: registered, config checked, opaque task references."""

import pytest

from connectors import registry
from connectors.base import BatchSpec, ConnectorConfigError, TaskSpec
from connectors.vendor import VendorConnector, task_ref


def test_vendor_is_registered_and_pulls_with_gold_up_front():
    assert registry.load("vendor") is VendorConnector
    assert VendorConnector.kind == "vendor"
    assert VendorConnector.is_pull and not VendorConnector.gold_on_demand


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"handoff": "pull"},
        {"handoff": "webhook", "webhook_url": "https://acme.example/hook"},
        {"webhook_url": "http://127.0.0.1:9000/x", "webhook_secret_env": "ACME_WEBHOOK_SECRET"},
    ],
)
def test_valid_configs(config):
    assert VendorConnector(config).config == config


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"handoff": "ftp"}, "config.handoff"),
        ({"handoff": "webhook"}, "config.webhook_url"),
        ({"webhook_url": "ftp://x"}, "config.webhook_url"),
        ({"webhook_secret_env": "not a name"}, "config.webhook_secret_env"),
        ({"webhook_secret": "hunter2"}, "config.webhook_secret"),
    ],
)
def test_invalid_configs_name_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as error:
        VendorConnector.validate_config(config)
    assert field in error.value.details


def test_publish_draws_a_salt_and_refs_are_opaque_and_stable():
    spec = BatchSpec(
        batch_id=7,
        project_id=1,
        title="t",
        instructions="",
        labels=["a", "b"],
        reward=0,
        currency="USD",
        tasks=[TaskSpec(task_ref="1", data={}, slots=2)],
    )
    one, two = VendorConnector({}).publish(spec), VendorConnector({}).publish(spec)
    assert one.state["task_salt"] != two.state["task_salt"]
    salt = one.state["task_salt"]
    assert task_ref(salt, 1) == task_ref(salt, 1) != task_ref(salt, 2)
    assert task_ref(salt, 1) != task_ref("another salt", 1)
    assert VendorConnector({}).collect(one) == []

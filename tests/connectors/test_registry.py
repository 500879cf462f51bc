"""Connectors load by name from the `quorum.connectors` entry points; failures are loud."""

from importlib.metadata import EntryPoint

import pytest

from connectors import registry
from connectors.base import Connector, UnknownConnectorError
from connectors.internal import InternalPoolConnector


def test_internal_pool_is_registered():
    assert "internal" in registry.available()
    assert registry.load("internal") is InternalPoolConnector


def test_unknown_name_is_an_error():
    with pytest.raises(UnknownConnectorError, match="no connector named 'nope'"):
        registry.load("nope")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no_such_module_xyz:Thing", "failed to load"),
        ("connectors.base:BatchSpec", "not a Connector subclass"),
    ],
)
def test_broken_entry_points_are_errors(monkeypatch, value, message):
    broken = EntryPoint(name="broken", value=value, group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [broken])
    with pytest.raises(UnknownConnectorError, match=message):
        registry.load("broken")


def test_internal_pool_config_is_checked():
    assert InternalPoolConnector({"lease_seconds": 60}).config == {"lease_seconds": 60}
    with pytest.raises(Exception, match="lease_seconds"):
        InternalPoolConnector({"lease_seconds": 1})
    with pytest.raises(Exception, match="unknown internal pool setting"):
        InternalPoolConnector({"colour": "red"})


def test_every_connector_implements_the_whole_interface():
    for name in registry.available():
        cls = registry.load(name)
        assert issubclass(cls, Connector) and not cls.__abstractmethods__

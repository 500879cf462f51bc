"""Find connector classes by name through the `quorum.connectors` entry-point group.

Entry points are resolved lazily, on first use: a connector whose import fails
(a missing optional dependency, say) raises UnknownConnectorError with the
reason, and never disappears silently.
"""

from importlib.metadata import EntryPoint, entry_points

from connectors.base import Connector, UnknownConnectorError

GROUP = "quorum.connectors"


def available() -> list[str]:
    """Return the names of every registered connector."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load(name: str) -> type[Connector]:
    """Return the connector class registered under `name`."""
    found: list[EntryPoint] = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise UnknownConnectorError(
            f"no connector named {name!r}; registered: {', '.join(available()) or 'none'}"
        )
    try:
        cls = found[0].load()
    except Exception as exc:  # any import failure must surface, with its reason
        raise UnknownConnectorError(f"connector {name!r} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UnknownConnectorError(f"connector {name!r} is not a Connector subclass")
    return cls

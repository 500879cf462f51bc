"""Workforces: register, list, and build their connectors."""

import logging
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import Connector, ConnectorError, UnknownConnectorError
from orchestrator.errors import ConflictError, InvalidInputError, NotFoundError
from orchestrator.models import Workforce
from orchestrator.services.keys import ensure_vendor

log = logging.getLogger("quorum.workforces")

KINDS = ("internal", "mturk", "vendor")
SECRET_KEY = re.compile(r"secret|password|passwd|token|api_?key|private_?key|access_?key", re.I)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_no_secrets(config: Mapping[str, Any], path: str = "config") -> None:
    """Refuse secrets in plain text: a secret setting must name an environment variable.

    A key that looks secret (`token`, `password`, `api_key`, ...) must end in `_env`
    and hold the name of the environment variable that holds the secret.
    """
    for key, value in config.items():
        where = f"{path}.{key}"
        if isinstance(value, Mapping):
            check_no_secrets(value, where)
        elif key.endswith("_env"):
            if not (isinstance(value, str) and ENV_NAME.match(value)):
                raise InvalidInputError(
                    "an *_env setting names an environment variable",
                    details={where: ["must be an environment variable name such as ACME_TOKEN"]},
                )
        elif SECRET_KEY.search(key):
            raise InvalidInputError(
                "secrets are not stored: put it in the environment and reference it",
                details={where: [f"looks secret; use '{key}_env': 'ENV_VAR_NAME' instead"]},
            )


def create_workforce(
    session: Session,
    *,
    name: str,
    kind: str,
    connector: str | None = None,
    config: Mapping[str, Any] | None = None,
    vendor: str | None = None,
) -> Workforce:
    """Register a workforce after checking its connector and configuration."""
    config = dict(config or {})
    check_no_secrets(config)
    connector_name = connector or kind
    try:
        cls = registry.load(connector_name)
        cls.validate_config(config)
    except ConnectorError as exc:
        details = exc.details or {"connector": [exc.message]}
        raise InvalidInputError(exc.message, details=details) from exc
    if cls.kind != kind:
        raise InvalidInputError(
            f"connector {connector_name!r} serves {cls.kind} workforces, not {kind}",
            details={"connector": [f"is a {cls.kind} connector"]},
        )
    if kind == "vendor" and not vendor:
        raise InvalidInputError(
            "a vendor workforce needs a vendor", details={"vendor": ["required"]}
        )
    if session.scalar(sa.select(Workforce.id).where(Workforce.name == name)) is not None:
        raise ConflictError(f"a workforce named {name!r} exists", details={"name": ["taken"]})
    workforce = Workforce(
        name=name,
        kind=kind,
        connector=connector_name,
        config=config,
        vendor_id=ensure_vendor(session, vendor).id if vendor else None,
    )
    session.add(workforce)
    session.flush()
    return workforce


def get_workforce(session: Session, workforce_id: int) -> Workforce:
    """Return a workforce or raise NotFoundError."""
    workforce = session.get(Workforce, workforce_id)
    if workforce is None:
        raise NotFoundError(f"workforce {workforce_id} not found")
    return workforce


def list_workforces(session: Session) -> list[Workforce]:
    """Return every workforce, oldest first."""
    return list(session.scalars(sa.select(Workforce).order_by(Workforce.id)))


def connector_for(workforce: Workforce) -> Connector:
    """Instantiate a workforce's connector with its stored configuration."""
    return registry.load(workforce.connector)(workforce.config)


def serving_gold_on_demand(session: Session, workforce_ids: set[int]) -> set[int]:
    """The workforces among these that serve gold on demand (the internal pool).

    The others received gold as ordinary tasks, so its slots are topped up and reopened
    like any task's. A workforce whose connector cannot be loaded counts as serving gold
    on demand: its gold gets no more slots, rather than failing the caller.
    """
    if not workforce_ids:
        return set()
    rows = session.execute(
        sa.select(Workforce.id, Workforce.connector).where(Workforce.id.in_(workforce_ids))
    )
    return {workforce_id for workforce_id, name in rows if _gold_on_demand(name)}


def _gold_on_demand(connector: str) -> bool:
    try:
        return registry.load(connector).gold_on_demand
    except UnknownConnectorError:
        log.warning(
            "connector cannot be loaded; its gold gets no more slots",
            extra={"connector": connector},
        )
        return True

"""Audit trail writes."""

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.models import AuditEvent
from orchestrator.services.keys import Principal


def record(
    session: Session,
    principal: Principal | None,
    action: str,
    entity_type: str,
    entity_id: object = None,
    **details: Any,
) -> None:
    """Append an audit event for an action taken by `principal` (None: the system)."""
    session.add(
        AuditEvent(
            api_key_id=principal.key_id if principal else None,
            role=principal.role if principal else None,
            action=action,
            entity_type=entity_type,
            entity_id=None if entity_id is None else str(entity_id),
            details=details,
        )
    )

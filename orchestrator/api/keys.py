"""API keys over HTTP: list, rotate and revoke (creating keys stays on the command line).

Admin keys manage every key; ops keys manage vendor and worker keys only, so an
ops key can never mint an admin key by rotating one. A vendor manages its own keys
under `/vendor/keys`: any other key, existing or not, is a 404.

A rotation answers with the new key's secret, once: it is not stored, so a rotation
is never replayed. The old key keeps working until `previous.expires_at`.
"""

from datetime import timedelta
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    PageQuerySchema,
    authorize,
    current_principal,
    forget_key,
    page_schema,
    with_session,
)
from orchestrator.errors import ForbiddenError
from orchestrator.models.keys import ROLES
from orchestrator.services import audit, keys

bp = Blueprint("keys", __name__, url_prefix="/api/v1", description="API keys")

MANAGERS = ("admin", "ops")
# Which roles' keys each manager role may rotate and revoke (None: every role).
MANAGEABLE: dict[str, tuple[str, ...] | None] = {"admin": None, "ops": ("vendor", "worker")}
KEY_STATUSES = ("active", "expiring", "expired", "revoked")


class KeySchema(Schema):
    """A key as listed: never its secret or hash."""

    id = fields.Integer(required=True)
    prefix = fields.String(
        required=True, metadata={"description": "First characters, to tell keys apart"}
    )
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    name = fields.String(required=True)
    vendor_id = fields.Integer(required=True, allow_none=True)
    worker_id = fields.Integer(required=True, allow_none=True)
    status = fields.Function(
        lambda key: keys.key_status(key),
        required=True,
        validate=validate.OneOf(KEY_STATUSES),
        metadata={
            "type": "string",
            "description": "expiring: works until expires_at (e.g. after a rotation)",
        },
    )
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    revoked_at = fields.DateTime(required=True, allow_none=True)


KeyPageSchema = page_schema(KeySchema, "KeyPage")


class RotateSchema(Schema):
    overlap_seconds = fields.Integer(
        load_default=int(keys.DEFAULT_OVERLAP.total_seconds()),
        validate=validate.Range(min=0, max=int(keys.MAX_OVERLAP.total_seconds())),
        metadata={"description": "How long the old key keeps working (default 24 hours)"},
    )


class RotationSchema(Schema):
    key = fields.Nested(KeySchema, required=True, metadata={"description": "The new key"})
    secret = fields.String(
        required=True, metadata={"description": "The new key's secret: shown this once only"}
    )
    previous = fields.Nested(
        KeySchema,
        required=True,
        metadata={"description": "The old key; it stops working at its expires_at"},
    )


def _vendor_id() -> int:
    vendor_id = current_principal().vendor_id
    if vendor_id is None:  # a vendor key always has a vendor; guard against bad data
        raise ForbiddenError("this key has no vendor scope")
    return vendor_id


def _rotate(session: Session, key_id: int, overlap_seconds: int, **scope: Any) -> keys.Rotation:
    rotation = keys.rotate_key(
        session, key_id=key_id, overlap=timedelta(seconds=overlap_seconds), **scope
    )
    audit.record(
        session,
        current_principal(),
        "key.rotate",
        "api_key",
        key_id,
        new_key_id=rotation.key.id,
        expires_at=rotation.previous_expires_at.isoformat(),
    )
    forget_key(rotation.previous.key_hash)
    return rotation


@bp.route("/keys")
class Keys(MethodView):
    @authorize(*MANAGERS)
    @bp.arguments(PageQuerySchema, location="query")
    @bp.response(200, KeyPageSchema)
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """List keys, newest first (never their secrets)."""
        data, total = keys.list_keys(session, limit=query["limit"], offset=query["offset"])
        return {"data": data, "total": total, "limit": query["limit"], "offset": query["offset"]}


@bp.route("/keys/<id:key_id>/rotate")
class KeyRotate(MethodView):
    @authorize(*MANAGERS)
    @bp.arguments(RotateSchema)
    @bp.response(201, RotationSchema)
    @bp.alt_response(409, description="The key is revoked or expired")
    @with_session
    def post(self, body: dict[str, Any], key_id: int, session: Session) -> Any:
        """Rotate a key: a new key with the same role and scope; the old one expires later."""
        roles = MANAGEABLE[current_principal().role]
        return _rotate(session, key_id, body["overlap_seconds"], roles=roles)


@bp.route("/keys/<id:key_id>/revoke")
class KeyRevoke(MethodView):
    @authorize(*MANAGERS)
    @bp.response(200, KeySchema)
    @with_session
    def post(self, key_id: int, session: Session) -> Any:
        """Revoke a key now (revoking a revoked key changes nothing)."""
        key = keys.revoke_key(session, key_id=key_id, roles=MANAGEABLE[current_principal().role])
        audit.record(session, current_principal(), "key.revoke", "api_key", key_id)
        forget_key(key.key_hash)
        return key


@bp.route("/vendor/keys")
class VendorKeys(MethodView):
    @authorize("vendor")
    @bp.arguments(PageQuerySchema, location="query")
    @bp.response(200, KeyPageSchema)
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """List your keys, newest first (never their secrets)."""
        data, total = keys.list_keys(
            session, vendor_id=_vendor_id(), limit=query["limit"], offset=query["offset"]
        )
        return {"data": data, "total": total, "limit": query["limit"], "offset": query["offset"]}


@bp.route("/vendor/keys/rotate")
class VendorKeyRotateCalling(MethodView):
    @authorize("vendor")
    @bp.arguments(RotateSchema)
    @bp.response(201, RotationSchema)
    @bp.alt_response(409, description="The key is expired")
    @with_session
    def post(self, body: dict[str, Any], session: Session) -> Any:
        """Rotate the key this request is sent with; it keeps working for the overlap."""
        key_id = current_principal().key_id
        return _rotate(session, key_id, body["overlap_seconds"], vendor_id=_vendor_id())


@bp.route("/vendor/keys/<id:key_id>/rotate")
class VendorKeyRotate(MethodView):
    @authorize("vendor")
    @bp.arguments(RotateSchema)
    @bp.response(201, RotationSchema)
    @bp.alt_response(409, description="The key is revoked or expired")
    @with_session
    def post(self, body: dict[str, Any], key_id: int, session: Session) -> Any:
        """Rotate one of your keys; any other key is a 404."""
        return _rotate(session, key_id, body["overlap_seconds"], vendor_id=_vendor_id())

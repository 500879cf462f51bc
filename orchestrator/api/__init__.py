"""HTTP API: flask-smorest blueprints with marshmallow schemas, under /api/v1."""

from typing import Any

from flask import Flask
from flask_smorest import Api

from orchestrator.api import (
    batches,
    billing,
    bonuses,
    deliveries,
    health,
    items,
    keys,
    metrics,
    projects,
    rate_cards,
    results,
    tasks,
    vendor,
    vendor_quality,
    workforces,
)
from orchestrator.api.common import MAX_ID, ErrorSchema, IdConverter, Money

BLUEPRINTS = (
    health.bp,
    metrics.bp,
    projects.bp,
    items.bp,
    workforces.bp,
    batches.bp,
    tasks.bp,
    results.bp,
    rate_cards.bp,
    bonuses.bp,
    billing.bp,
    vendor.bp,
    deliveries.bp,
    keys.bp,
    vendor_quality.bp,
)


class QuorumApi(Api):
    """flask-smorest's Api with Quorum's error envelope documented for every route."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        # orchestrator.errors registers the one envelope for every exception.
        pass


def init_api(app: Flask) -> Api:
    """Register the blueprints and the OpenAPI document on the app."""
    app.config.update(
        API_TITLE="Quorum",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        API_SPEC_OPTIONS=_spec_options(),
    )
    app.url_map.converters["id"] = IdConverter
    api = QuorumApi(app)
    api.register_converter(
        IdConverter, lambda _: {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    )
    api.register_field(Money, "string", "decimal")
    api.spec.components.schema("ItemInput", schema=items.ItemInputSchema)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    return api


def _spec_options() -> dict[str, Any]:
    return {
        "info": {
            "description": "Crowdsourcing and vendor orchestration for data labeling. "
            "Every route but /healthz and the docs needs `Authorization: Bearer KEY`.",
        },
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }

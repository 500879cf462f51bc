"""The Flask application factory."""

from flask import Flask

from orchestrator.api import init_api
from orchestrator.api.common import MAX_BODY_BYTES, SESSIONMAKER, SETTINGS
from orchestrator.db import make_engine, make_sessionmaker
from orchestrator.errors import register_error_handlers
from orchestrator.logs import install_request_logging
from orchestrator.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Create the Quorum API app; settings default to the environment's."""
    settings = settings or Settings.from_env()
    app = Flask("orchestrator")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # item imports raise it
    app.json.sort_keys = False  # type: ignore[attr-defined]
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    app.extensions["orchestrator.engine"] = engine
    app.extensions[SESSIONMAKER] = make_sessionmaker(engine)
    app.extensions[SETTINGS] = settings
    init_api(app)
    register_error_handlers(app)
    install_request_logging(app)
    return app

"""WSGI entry point for gunicorn: `gunicorn orchestrator.wsgi:app`."""

from orchestrator.app import create_app
from orchestrator.logs import configure_logging

configure_logging()
app = create_app()

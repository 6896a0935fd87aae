"""Convenience entry point at the project root: ``gunicorn wsgi:app`` works from a checkout."""

from app.wsgi import app  # noqa: F401

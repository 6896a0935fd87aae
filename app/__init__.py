"""Tessera, the group's OpenID Connect hub. ``app.factory.create_app`` builds the Flask app;
docs/architecture.md shows the layers and lists every module."""

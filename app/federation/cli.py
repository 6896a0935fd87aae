"""`tessera upstreams …`: operators configure upstream identity providers."""

import click


@click.group("upstreams")
def upstreams_group() -> None:
    """Upstream identity providers (login with another OpenID Connect or OAuth 2.0 provider)."""

"""`tessera clients set-contract`: a client's data contract with the partner API."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli_support import echo_json, json_option, reports_errors
from app.partners.contracts import set_contract


def _names(value: str | None) -> list[str]:
    return [n for n in (value or "").split(",") if n.strip()]


@click.command("set-contract")
@click.option("--client-id", required=True)
@click.option("--read", "read", default="", help="Comma-separated claims it may read (attributes.<name> or attributes.* for custom attributes).")
@click.option("--write", "write", default="", help="Comma-separated claims it may write.")
@click.option("--subscribe/--no-subscribe", default=False, help="Push claims-changed SETs to its events endpoint.")
@click.option("--token-exchange/--no-token-exchange", default=None,
              help="Allow (or stop allowing) it to trade a person's access token for a partner token (RFC 8693).")
@click.option("--write-acr", default=None,
              help="The acr (urn:tessera:loa:1|2|3) a person's authentication must reach for its writes (RFC 9470); "
                   "default: any token may write.")
@json_option
@with_appcontext
@reports_errors
def set_contract_command(client_id, read, write, subscribe, token_exchange, write_acr, as_json) -> None:
    """Create or replace a client's data contract; prints it with the salt of phone-hash lookups."""
    client, contract = set_contract(client_id, read=_names(read), write=_names(write), subscribe=subscribe,
                                    token_exchange=token_exchange, write_acr=write_acr, actor="operator:cli")
    data = {"client_id": client.client_id, "read": contract.read_claims, "write": contract.write_claims,
            "subscribe": contract.subscribe, "write_acr": contract.write_acr, "lookup_salt": contract.lookup_salt,
            "grant_types": client.grant_types, "phone_hash": "hex sha256(lookup_salt + E.164 phone number)"}
    if as_json:
        echo_json(data)
    else:
        click.echo(f"contract of {client.client_id}: read {', '.join(contract.read_claims) or '-'}; "
                   f"write {', '.join(contract.write_claims) or '-'}"
                   f"{f' (needs {contract.write_acr})' if contract.write_acr else ''}; "
                   f"subscribe {'yes' if contract.subscribe else 'no'}")
        click.echo(f"lookup salt (phone_hash = sha256(salt + E.164)): {contract.lookup_salt}")

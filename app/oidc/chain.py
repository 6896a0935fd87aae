"""Auto-login across partner sites.

* Third-party-initiated login (OIDC Core 4): the hub sends the browser to a client's
  ``initiate_login_uri`` with ``iss``, ``target_link_uri`` and optionally ``login_hint``.
* Login chain: right after a login at any site, the hub walks the browser through the
  ``initiate_login_uri`` of each partner listed by the client (or else its tenant's policy
  ``login_chain``). Each partner runs a silent ``prompt=none`` authorization and sends the browser
  back to ``target_link_uri`` (the hub's next step), whatever its outcome; at the end the paused
  authorization of the site that started resumes. Top-level redirects only: no third-party
  cookies. Bounded (``MAX_PARTNERS``, the interaction's lifetime), loop-safe (each step consumes
  one partner; a chain starts only after an interactive login, which silent partner
  authorizations never are), and a partner that fails is skipped because the hub moves on
  whatever comes back.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app

from app.extensions import db
from app.oidc.clients import ClientInfo, usable_client
from app.oidc.models import Interaction, LoginChain
from app.security import new_secret, utcnow

MAX_PARTNERS = 5


def initiate_login_url(client: ClientInfo, target_link_uri: str | None = None, login_hint: str | None = None) -> str:
    params = {"iss": current_app.config["TESSERA_ISSUER"]}
    if target_link_uri:
        params["target_link_uri"] = target_link_uri
    if login_hint:
        params["login_hint"] = login_hint
    sep = "&" if "?" in client.initiate_login_uri else "?"
    return f"{client.initiate_login_uri}{sep}{urlencode(params)}"


def chain_partners(client: ClientInfo) -> list[str]:
    """client_ids to log in after a login at ``client``: its own list, else its tenant's."""
    listed = client.login_chain if client.login_chain is not None else client.tenant.policy.get("login_chain", ())
    partners = []
    for client_id in listed:
        partner = usable_client(client_id)
        if partner is not None and partner.id != client.id and partner.initiate_login_uri and client_id not in partners:
            partners.append(client_id)
    return partners[:MAX_PARTNERS]


def start_chain(interaction: Interaction, partners: list[str]) -> LoginChain:
    chain = LoginChain(uid=new_secret(24), browser_hash=interaction.browser_hash, interaction_uid=interaction.uid,
                       remaining=partners, expires_at=interaction.expires_at)
    interaction.chain_done = True
    db.session.add(chain)
    db.session.commit()
    return chain


def next_step(chain: LoginChain, hub_step_url: str) -> str | None:
    """The next partner's initiate_login_uri, or None when the chain is done (the row is removed)."""
    while chain.remaining:
        client_id, *rest = chain.remaining
        chain.remaining = rest
        partner = usable_client(client_id)
        db.session.commit()
        if partner is not None and partner.initiate_login_uri:
            return initiate_login_url(partner, target_link_uri=hub_step_url)
    db.session.delete(chain)
    db.session.commit()
    return None


def load_chain(uid: str, browser_hash: str) -> LoginChain | None:
    chain = db.session.scalar(db.select(LoginChain).filter_by(uid=uid or ""))
    if chain is None or chain.browser_hash != browser_hash or chain.expires_at <= utcnow():
        return None
    return chain


"""RFC 8693 Token Exchange for the partner API, registered with the hub's authorization server by
``app.partners.wiring`` (as Authlib's ``register_grant``): a partner backend trades a person's
access token for a partner-API token bound to that person, carrying the authentication (``acr``,
``amr``, ``auth_time``) the person's token came from."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import (
    InvalidGrantError, InvalidRequestError, InvalidScopeError, UnauthorizedClientError, grants,
)
from authlib.oauth2.rfc6749.hooks import hooked
from flask import current_app

from app.oidc.bearer import active_account_claims, find_access_token
from app.oidc.clients import get_client_by_pk
from app.oidc.server import CONFIDENTIAL_AUTH_METHODS
from app.partners.contracts import TOKEN_EXCHANGE_GRANT, USER_BOUND_SCOPES, contract_for, may_access

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693 Token Exchange, for the partner API: a partner backend trades a person's access
    token (issued to it, or to a client of its sector and tenant) for a partner-API token bound to
    that person, with the partner scopes its contract and the person's consent allow."""

    GRANT_TYPE = TOKEN_EXCHANGE_GRANT
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_token_request(self):
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        data = self.request.payload.data
        # RFC 8693 2.1: subject_token and subject_token_type are REQUIRED; only access tokens are taken.
        if not data.get("subject_token") or data.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"subject_token with subject_token_type {ACCESS_TOKEN_TYPE} is required")
        if data.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE or data.get("actor_token"):
            raise InvalidRequestError("only access tokens are issued, and no actor tokens are taken")
        subject = find_access_token(data["subject_token"])
        origin = get_client_by_pk(subject.client_id) if subject is not None else None
        user = active_account_claims(subject.account_id) if subject is not None and subject.account_id else None
        if (user is None or not subject.is_active() or origin is None or origin.disabled
                or (origin.id != client.id and (origin.tenant_id, origin.sector_identifier) != (client.tenant_id, client.sector_identifier))):
            raise InvalidGrantError("subject_token is not a live access token of a person for this client's sector")
        if contract_for(client) is None or not may_access(client, user.id):
            raise InvalidGrantError("the person has not agreed to share data with this client")
        wanted = (self.request.payload.scope or " ".join(USER_BOUND_SCOPES)).split()
        scope = [s for s in USER_BOUND_SCOPES if s in wanted and s in client.scope.split()]
        if not scope:
            raise InvalidScopeError("a partner token can carry partner:read and partner:write only")
        self.request.client, self.request.user, self.exchanged_scope = client, user, " ".join(scope)
        # The new token stands on the person's authentication behind the subject token (its
        # auth_time, acr and amr: app.oidc.server._save_token), never on more.
        self.request.subject_token = subject

    @hooked
    def create_token_response(self):
        token = self.generate_token(user=self.request.user, scope=self.exchanged_scope, include_refresh_token=False,
                                    expires_in=current_app.config["TESSERA_ACCESS_TOKEN_TTL"])
        self.save_token(token)
        token["issued_token_type"] = ACCESS_TOKEN_TYPE  # RFC 8693 2.2.1
        return 200, token, self.TOKEN_RESPONSE_HEADER

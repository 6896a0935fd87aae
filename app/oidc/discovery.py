"""Discovery 1.0 / RFC 8414 metadata."""

from __future__ import annotations

from flask import current_app

from app.oidc.claims import SUPPORTED_CLAIMS, SUPPORTED_SCOPES
from app.oidc.keys import SUPPORTED_ALGS
from app.oidc.server import TOKEN_AUTH_METHODS
from app.oidc.assurance import ACR_VALUES_SUPPORTED


def provider_metadata() -> dict:
    issuer = current_app.config["TESSERA_ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout",
        "check_session_iframe": f"{issuer}/session/check",
        "frontchannel_logout_supported": True,
        "frontchannel_logout_session_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # The grants registered with the server: oidc's, and the features' (partners: token exchange).
        "grant_types_supported": list(current_app.extensions["tessera_authorization_server"].grant_types),
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": [m for m in TOKEN_AUTH_METHODS if m != "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": SUPPORTED_CLAIMS,
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": ACR_VALUES_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claim_types_supported": ["normal"],
        "ui_locales_supported": ["en"],
        "claims_locales_supported": ["en"],
        "authorization_response_iss_parameter_supported": True,
    }

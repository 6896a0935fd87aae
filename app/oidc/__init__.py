"""The OpenID Connect provider: the protocol (authorization, tokens, userinfo, discovery, logout,
sessions, pairwise subjects). The protocol layer of docs/architecture.md."""

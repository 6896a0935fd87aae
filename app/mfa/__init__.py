"""Second factors and step-up: TOTP (RFC 6238), recovery codes, passkeys (WebAuthn), the
second-factor step of a login, stepping a session up to the level a site asks for, and the
person's /account/security page."""

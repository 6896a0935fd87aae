"""Accounts (one natural person) and identities (the ways to log in to an account)."""

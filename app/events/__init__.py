"""Durable outbox: messages to clients (back-channel logout tokens, later Security Event Tokens)
are written in the same transaction as the change that causes them and delivered by a worker
with retries until the receiver answers 2xx."""

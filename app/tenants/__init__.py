"""Tenants: the subsidiaries of the group. Each owns its clients, branding and policy."""

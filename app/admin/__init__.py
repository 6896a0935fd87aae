"""The operators' admin REST API (/api/admin/v1) and its roles: who may run the hub, over the
services the CLI uses."""

"""The operators' admin REST API (/api/admin/v1), the admin console (/admin) and their roles: who
may run the hub, over the services the CLI uses."""

"""Migration of legacy account systems: bulk import with a conflict report, the dual-write sync
API, lazy migration at login, and legacy password hash formats."""

"""Partner data API: what clients (partner servers) may ask the hub about the people they know,
by the pairwise ``sub`` they hold. JSON in and out; every error is an RFC 9457 problem."""

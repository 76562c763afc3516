"""IP allowlist: which client addresses may reach the panel at all (pages, API, static, healthz)."""

"""Who is asking: sessions (users) and API tokens both end up as ``g.principal``."""

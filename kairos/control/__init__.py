"""Controllers beside the router: headroom watch and advice (planning on observed traffic)."""

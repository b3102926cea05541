"""Clients of a running router: HTTP client, load generator, admin calls, router launch."""

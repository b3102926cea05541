"""Benchmarks (run as scripts; a package so that their helper modules import by name)."""

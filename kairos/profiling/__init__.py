"""Measuring a real model's latency profile on local instance types."""

"""Benchmarks: each prints one JSON document (see README, Benchmarks)."""

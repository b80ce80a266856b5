"""Dagster assets, one module per layer."""

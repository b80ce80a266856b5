"""homefeed: models."""

"""homefeed: features."""

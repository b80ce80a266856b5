"""homefeed: serving."""

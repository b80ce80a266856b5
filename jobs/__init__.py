"""homefeed: jobs."""

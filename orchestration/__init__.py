"""homefeed: orchestration."""

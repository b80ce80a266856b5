"""The per-user pass: candidates to ranked feed in one pass per block of users."""

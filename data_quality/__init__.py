"""homefeed: data_quality."""

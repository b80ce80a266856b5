"""homefeed: offline evaluation on a generated world's ground truth or a real import (`homefeed eval`)."""

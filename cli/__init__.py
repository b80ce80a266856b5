"""homefeed: the `homefeed` command (`cli.main`), one module per group of subcommands."""

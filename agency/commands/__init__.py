"""The command groups of the CLI, one module per area."""

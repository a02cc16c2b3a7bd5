"""One module per command group of the `iz` CLI."""

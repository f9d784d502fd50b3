"""Tooling around the product: the embedded stack, demo, load generator, synthetic data,
benchmark and its baselines, process and /proc helpers, worker-log reading. Nothing outside
this folder imports it but the CLI's own tool commands.
May import: every room but the CLI."""

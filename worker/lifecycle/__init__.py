"""The model lifecycle around the fleet: labels joined to predictions, quality and its windows,
guardrails that abort a canary or roll back a new version, and the monitor process that runs
them. Built on models and stream, never copying them.
May import: stream, models, ops, infra, settings, errors."""

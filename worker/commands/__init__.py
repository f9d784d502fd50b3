"""Operator commands over the registry and the fleet: `scorer model ...`, `scorer status`.
May import: lifecycle, models, ops, infra, settings, errors."""

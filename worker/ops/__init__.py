"""A process's instruments: metrics, the HTTP health server, heartbeats, logging, the
supervisor of `scorer run --processes N`. Knows nothing of models or streams.
May import: infra, settings, errors."""

"""Model versions: the Redis registry, artifact verification and loading, the loaded-model
holder, the control-topic message and the reloader that swaps versions beside the loop.
May import: ops, infra, settings, errors."""

"""One small exception hierarchy; the CLI maps each class to one stderr line and an exit code."""


class ScorerError(Exception):
    """Base of every error the worker reports to a user."""

    exit_code = 1


class ConfigError(ScorerError):
    """A setting is unknown, of the wrong type or out of range."""

    exit_code = 2


class ServiceUnavailable(ScorerError):
    """Kafka or Redis could not be reached within the start-up deadline."""

    exit_code = 3


class RegistryError(ScorerError):
    """A registry operation was refused: unknown or duplicate version, nothing to roll back to."""

    exit_code = 4


class ArtifactRejected(ScorerError):
    """An artifact failed verification, loading, inspection or warm-up."""

    exit_code = 5

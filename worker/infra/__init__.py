"""Connections: Kafka and Redis client builders (TLS, SASL), topic creation, bounded retries.
May import: settings, errors."""

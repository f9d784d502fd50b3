"""The hot path: poll → decode → score → produce → commit, its Kafka transports (an
interface, kafka-python, confluent-kafka, and the factory that picks one), partitioning,
GC settings and /predict's scoring.
May import: models, ops, infra, settings, errors."""

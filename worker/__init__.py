"""Kafka stream scoring worker: scores events with the model version Redis names active."""

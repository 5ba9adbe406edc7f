"""Kafka helpers: explicit topic creation, producer and consumer settings, the faust stage runner."""

"""Integration tests: they run against the real Kafka broker and MinIO server (``devservers``)."""

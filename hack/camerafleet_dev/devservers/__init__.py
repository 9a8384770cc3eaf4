"""Real servers started as local processes for the demo, tests and benchmarks.

There is no Docker engine on the machines this project is developed and tested on, so the real Kafka
broker and MinIO server are fetched from package registries (Maven Central, the Go module proxy), cached
outside the repository, and started as plain processes on free loopback ports.
"""

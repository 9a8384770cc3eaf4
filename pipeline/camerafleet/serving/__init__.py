"""The Ray Serve inference application: an ingress that fetches and decodes frames once and fans them
out to one batched, autoscaled deployment per model."""

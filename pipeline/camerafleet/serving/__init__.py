"""The Ray Serve inference application: an ingress that fetches each frame once and fans its JPEG out to one
batched, autoscaled deployment per model, whose replicas decode it at the scale their model needs."""

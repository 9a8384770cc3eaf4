"""CameraFleet's contract: the manifest, the messages between stages, outcome reasons, Serve options,
versions and settings. It needs only pydantic and PyYAML, so the operator and any other client can use
it without the pipeline runtime (Ray, onnxruntime, OpenCV); import-linter keeps it that way."""

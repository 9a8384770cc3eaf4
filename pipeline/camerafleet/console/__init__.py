"""The fleet console: a read-only web page of camera tiles with their detections, health and ledger,
served by `camerafleet run --console-port N` (see `service.py`)."""

"""The models CameraFleet serves: ONNX models that turn batches of BGR frames into JSON results.

`registry.create_model(spec)` builds the model of a manifest `ModelSpec`; `base.OnnxModel` is the
contract every model follows. This package module imports nothing heavy, so importing
`camerafleet.models` does not pull in onnxruntime or OpenCV; import the submodules where they run.
"""

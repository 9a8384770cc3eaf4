"""CameraFleet: video analytics for camera fleets on Kafka, Ray and Ray Serve.

cameras -> producer actors -> frame bucket + one Kafka topic per camera -> consumer actors ->
Ray Serve inference (several ONNX models per frame, batched, autoscaled) -> results topic and log.
"""

__version__ = "0.1.0"

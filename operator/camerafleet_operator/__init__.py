"""The CameraFleet Kubernetes operator (kopf): turns `CameraFleet` resources into Kafka topics, a KubeRay
RayService serving the models, and producer/consumer RayJobs running `camerafleet run`.

The package lives under `operator/` but is not named `operator`, which would shadow the standard library.
"""

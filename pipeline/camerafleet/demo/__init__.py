"""Demo material for CameraFleet that is generated locally, so the demo needs no downloads.

`camerafleet.demo.clips` renders the demo camera clips: a virtual surveillance camera panning and
zooming over scenes composed from the photographs that ship inside scikit-image.
"""

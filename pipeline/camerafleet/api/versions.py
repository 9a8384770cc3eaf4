"""Versions other artifacts must agree with, importable without importing them: the Ray version the
operator writes into RayService/RayJob specs must be the one the images and pyproject.toml pin."""

RAY_VERSION = "2.60.0"

"""Prints the Ray image's Python requirements: the project's dependencies and its `pipeline` extra, as
pyproject.toml declares them, without onnxruntime (the image installs onnxruntime-gpu, which provides the same
module). Run in the image's build stage: its output changes only with pyproject.toml, so the layer that installs
the requirements (2 GB of CUDA wheels among them) is rebuilt only then, not on every change of the code.

    python requirements.py pyproject.toml > requirements.txt
"""

import re
import sys
import tomllib

REPLACED = "onnxruntime"  # by onnxruntime-gpu of the same version, installed beside the requirements


def requirements(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["pipeline"]]
    return [r for r in wanted if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].strip().lower() != REPLACED]


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(requirements(tomllib.load(f))))

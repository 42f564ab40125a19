"""bonemets in Triton's Python backend. Written by export/packaging/repository.py.

The served code is api/inference/triton_python_model.py: the stub imports it from the
bonemets installation on its PYTHONPATH, so this file never holds a copy to go stale.
"""

from api.inference.triton_python_model import TritonPythonModel

__all__ = ["TritonPythonModel"]

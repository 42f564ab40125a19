"""The PyTorch DeepLabV3+ that segments bone metastases, and its end-to-end serving wrapper."""

from export.model.config import ModelConfig
from export.model.deeplab import DeepLabV3Plus, build_model, parameter_count

__all__ = ["DeepLabV3Plus", "ModelConfig", "build_model", "parameter_count"]

"""The trained network for serving: ONNX and TensorRT export, parity checks, and the
Triton model repository writer."""

"""The tooling around the served model: make data, train, evaluate, package, benchmark.

Packages, lowest first; a package imports only lower ones (tests/unit/test_layout.py)::

    model, phantoms   the PyTorch DeepLabV3+ and its checkpoints; synthetic CT phantoms
    sources           labelled volumes from phantoms, DICOM + SEG and NIfTI
    evaluation        a model over labelled studies: metrics, report, gallery, mimics
    training          slice banks, batches, losses, the loop, validation and calibration
    packaging         ONNX and TensorRT export, the Triton repository writer
    bench             how fast Triton and the gateway are
"""

"""DICOM objects made from a finished study: a Segmentation and a TID 1500 Structured Report."""

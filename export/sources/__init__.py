"""Labelled CT volumes for training and evaluation: phantoms, DICOM + SEG, NIfTI."""

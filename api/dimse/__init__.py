"""DICOM in: what STOW-RS and the DIMSE listener share (instances checked one by one, their
failure codes) and the listener itself (pynetdicom, a thread of the gateway process)."""

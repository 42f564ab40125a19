"""Results back to the PACS: each finished study's SEG and SR sent to the configured
destinations by DICOMweb STOW-RS or DIMSE C-STORE, retried with backoff."""

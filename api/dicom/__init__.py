"""DICOM in: uploads to files, the header pass, series selection, pixels to Hounsfield units.

Modules, each importable on its own (this package imports only pydicom's config eagerly):

- ``sources``: uploads to files (safe zip extraction, folder listing).
- ``headers`` / ``screening`` / ``integrity`` / ``pixel_element``: the cheap per-file header
  pass and its rejections; ``quick_header`` and ``header_values`` read plain files without
  pydicom (the same checks run on what they read; anything unusual goes through pydicom).
- ``series``: :func:`~api.dicom.series.select_ct_series` -> :class:`~api.dicom.series.CTSeries`;
  ``duplicates``: slices at one position.
- ``slices``: :class:`~api.dicom.slices.SliceRef` and
  :func:`~api.dicom.slices.load_slice_hounsfield` for worker processes (both also importable
  from ``series``).
- ``pixels``: decoding, modality LUT (HU), pixel padding; ``native``: uncompressed slices read
  straight from the file.
- ``geometry``: slice planes in patient space and the fit into the model's square input.
"""

import logging

# pydicom's config sets its logger to WARNING when first imported, so it is imported before
# the level is raised: otherwise the first module here to import pydicom would undo it.
import pydicom.config  # noqa: F401

# pydicom's own warnings quote element values ("Invalid value for VR DA: '...'"): a birth
# date, a name or a UID would reach the logs. Its exceptions still surface as our errors.
# Set here, where every process that reads DICOM (the gateway and its decode workers) passes.
logging.getLogger("pydicom").setLevel(logging.ERROR)

"""DICOM in: uploads to files, the header pass, series selection, pixels to Hounsfield units.

Modules, each importable on its own (this package only holds pydicom's logger at ERROR):

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


class _AtLeastError(logging.Logger):
    """pydicom's logger, never below ERROR.

    pydicom's own warnings quote element values ("Invalid value for VR DA: '...'"): a birth
    date, a name or a UID would reach the logs; its exceptions still surface as our errors.
    Its config sets the level to WARNING when first imported, which may be long after this
    package: a decode worker reading plain slices never imports pydicom at all.
    """

    def setLevel(self, level: int | str) -> None:  # noqa: N802 - logging's name
        number = logging.getLevelName(level) if isinstance(level, str) else level
        super().setLevel(max(number, logging.ERROR))


# Set here, where every process that reads DICOM (the gateway and its decode workers) passes.
# Where pydicom came first its logger exists already, and a plain set is enough.
_default_class = logging.getLoggerClass()
logging.setLoggerClass(_AtLeastError)
try:
    logging.getLogger("pydicom").setLevel(logging.ERROR)
finally:
    logging.setLoggerClass(_default_class)

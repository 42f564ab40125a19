"""DICOM in: uploads to files, the header pass, series selection, pixels to Hounsfield units.

Modules, each importable on its own (this package imports nothing eagerly):

- ``sources``: uploads to files (safe zip extraction, folder listing).
- ``headers`` / ``screening`` / ``integrity``: the cheap per-file header pass and its rejections.
- ``series``: :func:`~api.dicom.series.select_ct_series` -> :class:`~api.dicom.series.CTSeries`,
  and :func:`~api.dicom.series.load_slice_hounsfield` for worker processes.
- ``pixels``: decoding, modality LUT (HU), pixel padding, display windows.
- ``geometry``: slice planes in patient space and the fit into the model's square input.
"""

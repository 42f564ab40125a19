"""docs/images/seg_over_ct.png: the SEG the gateway made, drawn from the SEG file itself.

    .venv/bin/python -m api.cli phantom --out /tmp/segsr_ph --studies 1 --slices 24 \
        --negative-share 0 --lesions 3
    PYTHONPATH=$PWD .venv/bin/python docs/images/seg_over_ct.py docs/images/seg_over_ct.png

The phantom study goes through the app with the shipped ONNX model in process; the slice
with the most segmented pixels is drawn in the bone window, segment pixels red, with a 4x
crop around them.
"""
import io, sys, tempfile
from pathlib import Path
import numpy as np, pydicom, highdicom as hd
from PIL import Image, ImageDraw
from api.config import Settings
from api.http.app import create_app
from api.inference.onnx_local import OnnxSegmenter
from tests.api.conftest import as_files
from tests.api.contract import CheckedClient

def main() -> None:
    paths = sorted(Path("/tmp/segsr_ph/study_0001/dicom").rglob("*.dcm"))
    model = OnnxSegmenter.from_repository(Path("model_repository"))
    tmp = Path(tempfile.mkdtemp())
    app = create_app(Settings(data_dir=tmp / "d", decode_workers=1, batch_size=4), model_factory=lambda _: model)
    with CheckedClient(app, raise_server_exceptions=True) as client:
        job = client.post("/v1/studies?wait=600", files=as_files(paths)).json()
        print(len(job["result"]["lesions"]), "lesions")
        data = client.get(f"/v1/studies/{job['id']}/seg.dcm").content
    seg = pydicom.dcmread(io.BytesIO(data))
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    by_source: dict[str, np.ndarray] = {}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        by_source[uid] = by_source.get(uid, np.zeros(frame.shape, bool)) | frame.astype(bool)
    uid = max(by_source, key=lambda u: by_source[u].sum())
    ct = next(pydicom.dcmread(p) for p in paths if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == uid)
    hu = pydicom.pixels.apply_modality_lut(ct.pixel_array, ct).astype(float)
    grey = np.clip((hu - (400 - 900)) / 1800 * 255, 0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    mask = by_source[uid]
    rgb[mask] = (0.5 * rgb[mask] + 0.5 * np.array([255, 40, 40])).astype(np.uint8)
    rows, cols = np.nonzero(mask)
    r0 = int(np.clip(rows.mean() - 64, 0, mask.shape[0] - 128))
    c0 = int(np.clip(cols.mean() - 64, 0, mask.shape[1] - 128))
    zoom = Image.fromarray(rgb[r0:r0 + 128, c0:c0 + 128]).resize((512, 512), Image.NEAREST)
    full = Image.fromarray(rgb)
    ImageDraw.Draw(full).rectangle([c0, r0, c0 + 127, r0 + 127], outline=(255, 220, 0))
    picture = Image.new("RGB", (1024, 512))
    picture.paste(full, (0, 0)); picture.paste(zoom, (512, 0))
    picture.save(sys.argv[1], optimize=True)
    print("slice", ct.InstanceNumber, int(mask.sum()), "pixels")

if __name__ == "__main__":
    main()

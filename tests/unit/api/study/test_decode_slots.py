"""Decode workers write HU into the pool's shared memory: the same HU as a decode in this
process, through a worker's death, and no block left behind once the pool stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

from api.dicom.series import SliceRef, load_slice_hounsfield, select_ct_series
from api.study.decoder_pool import DecoderPool
from api.study.decoding import DecodedBatch, decode_batch
from tests.dicom_builders import compressed, ct_slice, stored_pattern, write, write_series

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning")]

SIZE = 16


def _series(folder: Path) -> list[SliceRef]:
    """Three native slices at the model's size, a compressed one, and a smaller one that
    is resized."""
    paths = write_series(folder, [0.0, 1.0, 2.0], rows=SIZE, columns=SIZE,
                         pixels=stored_pattern(SIZE, SIZE, 1))
    paths.append(write(compressed(ct_slice(z=3.0, instance_number=4, rows=SIZE, columns=SIZE),
                                  RLELossless), folder / "rle.dcm"))
    small = write(ct_slice(z=4.0, rows=SIZE // 2, columns=SIZE), folder / "small.dcm")
    # A series holds one image size: the small slice comes from a series of its own.
    return [*select_ct_series(paths).slices, *select_ct_series([small]).slices]


async def _decode(pool: DecoderPool, refs: list[SliceRef]) -> tuple[DecodedBatch, np.ndarray]:
    slots = pool.slots(2, len(refs), SIZE)
    slot = await slots.acquire()
    try:
        batch = await asyncio.wrap_future(
            pool.submit(decode_batch, 0, refs, SIZE, slots.address(slot))
        )
        return batch, slots.view(slot, len(refs)).copy()
    finally:
        slots.release(slot)


def test_a_worker_writes_the_hu_this_process_decodes(tmp_path: Path) -> None:
    from api.dicom.geometry import resize_to_model

    refs = _series(tmp_path)
    assert [ref.native is not None for ref in refs].count(False) == 1  # the RLE one
    pool = DecoderPool(1)
    try:
        batch, hounsfield = asyncio.run(_decode(pool, refs))
    finally:
        pool.shutdown()
    for i, ref in enumerate(refs):
        expected, mapping = resize_to_model(load_slice_hounsfield(ref), SIZE)
        assert hounsfield[i].tobytes() == expected.tobytes()
        assert batch.mappings[i] == mapping
    assert not batch.mappings[-1].is_identity
    assert batch.start == 0


def test_a_fresh_pool_after_a_killed_worker_writes_into_the_same_block(tmp_path: Path) -> None:
    refs = _series(tmp_path)[:3]
    pool = DecoderPool(1)
    try:
        _, first = asyncio.run(_decode(pool, refs))
        os.kill(pool.submit(os.getpid).result(timeout=60), signal.SIGKILL)
        for _ in range(50):  # the pool notices the death on its own thread
            try:
                pool.submit(os.getpid).result(timeout=60)
                break
            except Exception:  # noqa: BLE001 - BrokenProcessPool until it is replaced
                continue
        _, again = asyncio.run(_decode(pool, refs))
        assert pool.respawns == 1
        assert again.tobytes() == first.tobytes()
    finally:
        pool.shutdown()


POOL_RUN = """
import asyncio, os, sys
from pathlib import Path
from api.dicom.series import select_ct_series
from api.study.decoder_pool import DecoderPool
from api.study.decoding import decode_batch

SIZE = int(sys.argv[2])

async def main() -> str:
    refs = list(select_ct_series(sorted(Path(sys.argv[1]).glob("*.dcm"))).slices)
    pool = DecoderPool(2)
    slots = pool.slots(2, len(refs), SIZE)
    slot = await slots.acquire()
    future = pool.submit(decode_batch, 0, refs, SIZE, slots.address(slot))
    await asyncio.wrap_future(future)
    name = slots.address(slot).block
    pool.shutdown()
    return name

if __name__ == "__main__":
    name = asyncio.run(main())
    print(name, os.path.exists(f"/dev/shm/{name}"))
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory under /dev/shm")
def test_a_stopped_pool_leaves_no_block_and_no_tracker_warning(tmp_path: Path) -> None:
    write_series(tmp_path, [0.0, 1.0], rows=SIZE, columns=SIZE)
    script = tmp_path / "pool_run.py"
    script.write_text(POOL_RUN)
    root = Path(__file__).parents[4]
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(SIZE)],
                          capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    name, exists = done.stdout.split()
    assert name.startswith(("psm_", "wnsm_"))
    assert exists == "False"
    assert "resource_tracker" not in done.stderr
    assert "leaked" not in done.stderr


def test_a_slot_whose_decode_was_abandoned_returns_only_when_that_decode_ends() -> None:
    from concurrent.futures import Future

    from api.study.decode_slots import DecodeSlots

    async def scenario() -> list[str]:
        slots = DecodeSlots(1, 1, SIZE)
        seen = []
        try:
            slot = await slots.acquire()
            still_running: Future[None] = Future()
            still_running.set_running_or_notify_cancel()
            slots.release(slot, after=still_running)
            waiter = asyncio.ensure_future(slots.acquire())
            await asyncio.sleep(0.05)
            seen.append("free while writing" if waiter.done() else "held while writing")
            still_running.set_result(None)  # the worker is done with it
            seen.append(f"slot {await asyncio.wait_for(waiter, 5)} back")
            slots.release(slot, after=still_running)  # a finished decode: back at once
            seen.append(f"slot {await asyncio.wait_for(slots.acquire(), 0.01)} back at once")
        finally:
            slots.close()
        return seen

    assert asyncio.run(scenario()) == ["held while writing", "slot 0 back", "slot 0 back at once"]

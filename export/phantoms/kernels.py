"""What the reconstruction kernel does to a slice: resolution, edge overshoot, noise texture.

CT noise is not white: filtered back-projection shapes it with the ramp filter times the
kernel's roll-off, so its power spectrum (NPS) is zero at DC, peaks, and falls off. A soft
(abdomen) kernel peaks low and blurs edges; a sharp (bone) kernel peaks high, with an edge
overshoot. ``standard`` is the look every phantom had before kernels were an option: Gaussian-
correlated noise and a Gaussian blur, kept bit for bit.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from export.phantoms.spec import PhantomSpec

HU_MIN, HU_MAX = -1024, 3071
PADDING_HU = -2000  # outside the reconstruction circle, as GE scanners store it
_BANK = 1600
# kernel: (blur relative to blur_mm, edge overshoot, NPS peak in cycles per pixel)
_KERNELS = {"soft": (1.8, 0.0, 0.10), "standard": (1.0, 0.0, 0.0), "sharp": (0.5, 0.7, 0.30)}


@lru_cache(maxsize=3)
def noise_bank(kernel: str = "standard") -> NDArray[np.float32]:
    """Unit-variance noise with the kernel's texture, made once per process and kernel.

    Cropped at random offsets and orientations for each slice: drawing and filtering fresh
    noise for every slice cost more than drawing the anatomy.
    """
    if kernel == "standard":
        rng = np.random.default_rng(0x4015E)
        bank: NDArray[np.float32] = ndimage.gaussian_filter(
            rng.standard_normal((_BANK, _BANK), dtype=np.float32), 0.8, mode="wrap")
    else:
        white = np.random.default_rng([0x4015E, 1 + tuple(_KERNELS).index(kernel)])
        spectrum = np.fft.rfft2(white.standard_normal((_BANK, _BANK), dtype=np.float32))
        f = np.hypot(np.fft.fftfreq(_BANK)[:, None], np.fft.rfftfreq(_BANK)[None, :])
        peak = _KERNELS[kernel][2]
        # NPS ~ f * exp(-f^2 / f0^2): ramp filter times the kernel's apodisation window,
        # peaking at `peak`.
        nps = f * np.exp(-((f / (peak * np.sqrt(2.0))) ** 2))
        bank = np.fft.irfft2(spectrum * np.sqrt(nps), s=(_BANK, _BANK)).astype(np.float32)
    bank /= bank.std()
    bank.flags.writeable = False
    return bank


def noise(shape: tuple[int, int], rng: np.random.Generator,
          kernel: str = "standard") -> NDArray[np.float32]:
    """A crop of the kernel's noise bank at a random offset and orientation."""
    bank = noise_bank(kernel)
    r0, c0 = (int(x) for x in rng.integers(0, bank.shape[0] - max(shape), 2))
    crop = bank[r0:r0 + shape[0], c0:c0 + shape[1]]
    flips = int(rng.integers(0, 4))
    return crop[:: 1 - 2 * (flips & 1), :: 1 - 2 * (flips >> 1)]


def finish(hu: NDArray[np.float32], spec: PhantomSpec, rng: np.random.Generator,
           fov: NDArray[np.bool_] | None) -> NDArray[np.int16]:
    """Partial-volume blur and the kernel's edges, its noise, scanner clipping, integer HU."""
    blur, overshoot, _ = _KERNELS[spec.kernel]
    sigma = spec.blur_mm / spec.pixel_spacing_mm
    if spec.kernel != "standard":
        sigma *= blur
    if sigma > 0:
        hu = ndimage.gaussian_filter(hu, sigma, truncate=3.0)
    if overshoot:
        # Unsharp masking: the bright rim inside cortex and dark halo outside of a bone kernel.
        hu = hu + np.float32(overshoot) * (hu - ndimage.gaussian_filter(hu, 1.2, truncate=3.0))
    hu += noise(hu.shape, rng, spec.kernel) * np.float32(spec.noise_hu)  # type: ignore[arg-type]
    out = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
    if fov is not None:
        out[~fov] = PADDING_HU
    return out

"""ASD FieldSpec ``.asd`` binary spectra: read (and, for tests and conversions, write) the layout
documented in ASD Inc.'s "ASD File Format" (version 8, revision B), read directly.

No maintained reader was found on the package registry: ``specdal`` (last release 0.2.1, 2018)
reads ``.asd`` but is unmaintained, pulls matplotlib, and sizes the spectrum block as 8-byte
doubles whatever the file's data format; ``pyasd`` is an unrelated spin-dynamics package;
``spectral`` (SPy) reads hyperspectral images, not ASD files. The fields used are few:

=======  ======  =====================================================================
offset   type    field
=======  ======  =====================================================================
0        char[3] file version: ``ASD`` (version 1, no reference block) or ``as2``..``as8``
186      uint8   data type: 0 raw, 1 reflectance, 2 radiance, 3 no units, 4 irradiance,
                 5 quality index, 6 transmittance, 7 unknown, 8 absorbance
191      float32 wavelength of the first channel (nm)
195      float32 wavelength step (nm)
199      uint8   data format: 0 float32, 1 int32, 2 float64, 3 unknown
204      uint16  number of channels
484      ...     the spectrum: channels values in the data format
=======  ======  =====================================================================

Files from version 2 on follow the spectrum with the white reference: a reference header
(flag: 2 bytes, reference time: 8, spectrum time: 8, description: uint16 length + characters)
and the reference spectrum (channels float64 values). All numbers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_BYTES = 484
DATA_TYPES = ("raw", "reflectance", "radiance", "no_units", "irradiance", "quality_index",
              "transmittance", "unknown", "absorbance")
_FORMATS = {0: ("<f4", 4), 1: ("<i4", 4), 2: ("<f8", 8)}
_VERSIONS = {b"ASD": 1, **{f"as{n}".encode(): n for n in range(2, 9)}}


@dataclass(frozen=True)
class AsdSpectrum:
    """One ``.asd`` file: its channels' wavelengths (nm), the spectrum in the file's data type,
    the white reference when the file has one, and the file version (1-8)."""

    wavelengths_nm: np.ndarray
    values: np.ndarray
    data_type: str
    reference: np.ndarray | None
    file_version: int

    def reflectance(self) -> np.ndarray:
        """Reflectance fractions: the spectrum of a reflectance file, or a raw spectrum divided
        by the file's white reference (as ViewSpec's reflectance: target / reference, no panel
        correction); ``ValueError`` for other data types or a raw file without a reference."""
        if self.data_type == "reflectance":
            return self.values
        if self.data_type == "raw":
            if self.reference is None or not np.all(self.reference > 0):
                raise ValueError("a raw (DN) .asd spectrum needs the white reference stored in "
                                 "the file (all channels > 0) to give reflectance; this file has "
                                 "none: export reflectance from ViewSpec / RS3 instead")
            return self.values / self.reference
        raise ValueError(f"the .asd spectrum is {self.data_type}, not reflectance: export "
                         "reflectance (or absorbance) from the instrument software")


def read_asd(path: str | Path) -> AsdSpectrum:
    """Read one ``.asd`` file (the fields in the module notes); ``ValueError`` naming the file
    and the field for anything that is not a readable ASD spectrum."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < HEADER_BYTES or data[:3] not in _VERSIONS:
        raise ValueError(f"{path}: not an ASD .asd file (it needs a {HEADER_BYTES}-byte header "
                         f"starting with 'ASD' or 'as2'..'as8'; got {data[:3]!r}, "
                         f"{len(data)} bytes)")
    version = _VERSIONS[data[:3]]
    type_code = data[186]
    if type_code >= len(DATA_TYPES):
        raise ValueError(f"{path}: data type code {type_code} at offset 186 is not one of 0-8")
    start, step = struct.unpack_from("<ff", data, 191)
    format_code = data[199]
    (channels,) = struct.unpack_from("<H", data, 204)
    if format_code not in _FORMATS:
        raise ValueError(f"{path}: data format code {format_code} at offset 199 is not 0 "
                         "(float), 1 (integer) or 2 (double)")
    if channels < 2 or not (np.isfinite(start) and np.isfinite(step) and step > 0):
        raise ValueError(f"{path}: {channels} channels from {start:g} nm every {step:g} nm "
                         "(offsets 191, 195, 204) is not a spectrum")
    dtype, width = _FORMATS[format_code]
    end = HEADER_BYTES + channels * width
    if len(data) < end:
        raise ValueError(f"{path}: truncated: {channels} channels of {width} bytes need "
                         f"{end} bytes, the file has {len(data)}")
    values = np.frombuffer(data, dtype=dtype, count=channels, offset=HEADER_BYTES)
    reference = None
    if version >= 2 and len(data) >= end + 20:
        (length,) = struct.unpack_from("<H", data, end + 18)
        offset = end + 20 + length
        if len(data) >= offset + channels * 8:
            reference = np.frombuffer(data, dtype="<f8", count=channels, offset=offset)
            reference = reference.astype(np.float64)
    wavelengths = start + step * np.arange(channels, dtype=np.float64)
    return AsdSpectrum(np.round(wavelengths, 6), values.astype(np.float64),
                       DATA_TYPES[type_code], reference, version)


def write_asd(path: str | Path, start_nm: float, step_nm: float, values, *,
              data_type: str = "reflectance", reference=None, version: int = 7,
              description: str = "") -> Path:
    """Write a spectrum as an ``.asd`` file in the layout :func:`read_asd` reads (float64 data;
    version >= 2 files get the reference block, ``reference`` or zeros). The other header fields
    are zero. For tests and for converting spectra to the instrument format."""
    values = np.asarray(values, dtype="<f8")
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type must be one of {DATA_TYPES}; got {data_type!r}")
    header = bytearray(HEADER_BYTES)
    header[:3] = b"ASD" if version == 1 else f"as{version}".encode()
    header[186] = DATA_TYPES.index(data_type)
    struct.pack_into("<ff", header, 191, start_nm, step_nm)
    header[199] = 2
    struct.pack_into("<H", header, 204, values.size)
    blocks = [bytes(header), values.tobytes()]
    if version >= 2:
        text = description.encode()
        blocks.append(struct.pack("<?x", reference is not None) + bytes(16)
                      + struct.pack("<H", len(text)) + text)
        ref = np.zeros(values.size) if reference is None else reference
        blocks.append(np.asarray(ref, dtype="<f8").tobytes())
    path = Path(path)
    path.write_bytes(b"".join(blocks))
    return path

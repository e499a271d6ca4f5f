# Reader and writer for pathkernel's PATHKRNL file format (matrix objects
# only), so the Python benchmarks exchange data with the Lua side bit-exactly.
import os
import struct
import zlib

import numpy as np

MAGIC = b"PATHKRNL"
VERSION = 1
TAG_MATRIX = 1
_HEADER = struct.Struct("<8sIIQ")   # magic, version, tag, payload length
_DIMS = struct.Struct("<QQ")        # rows, cols
_CRC = struct.Struct("<I")


def read_matrix(path):
    """Return the matrix saved at path as a 2-D float64 array."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size + _CRC.size:
        raise ValueError(f"{path}: file too short ({len(data)} bytes) for a header")
    magic, version, tag, plen = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError(f"{path}: bad magic {magic!r}, not a pathkernel file")
    if version != VERSION:
        raise ValueError(f"{path}: unsupported format version {version}")
    if tag != TAG_MATRIX:
        raise ValueError(f"{path}: object tag {tag} is not a matrix ({TAG_MATRIX})")
    if plen != len(data) - _HEADER.size - _CRC.size:
        raise ValueError(f"{path}: payload length {plen} does not match file size {len(data)}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != zlib.crc32(data[:-_CRC.size]):
        raise ValueError(f"{path}: CRC-32 mismatch, file is corrupt")
    if plen < _DIMS.size:
        raise ValueError(f"{path}: payload too short for matrix dimensions")
    rows, cols = _DIMS.unpack_from(data, _HEADER.size)
    # compare in Python integers so absurd sizes cannot overflow
    if rows * cols * 8 != plen - _DIMS.size:
        raise ValueError(f"{path}: {rows} x {cols} matrix does not match payload length {plen}")
    start = _HEADER.size + _DIMS.size
    values = np.frombuffer(data, dtype="<f8", count=rows * cols, offset=start)
    return values.astype(np.float64).reshape(rows, cols)


def write_matrix(path, array):
    """Save a 2-D array (1-D becomes a column) atomically via path + '.tmp'."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"write_matrix: expected a 2-D array, got {a.ndim}-D")
    payload = _DIMS.pack(*a.shape) + np.ascontiguousarray(a, dtype="<f8").tobytes()
    body = _HEADER.pack(MAGIC, VERSION, TAG_MATRIX, len(payload)) + payload
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(body + _CRC.pack(zlib.crc32(body)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""Prints the content of a delivered object, decompressed by Python's own readers (gzip,
zipfile) and cramjam's Snappy, independently of the Rust crates that wrote it.

Usage: read_object.py UNCOMPRESSED|GZIP|ZIP|Snappy|HADOOP_SNAPPY FILE
"""

import gzip
import io
import struct
import sys
import zipfile

import cramjam


def hadoop_snappy(data: bytes) -> bytes:
    """Hadoop's block format: raw length, then (compressed length, raw Snappy chunk)s."""
    out = bytearray()
    view = memoryview(data)
    while view:
        (raw_len,) = struct.unpack(">I", view[:4])
        view = view[4:]
        block = bytearray()
        while len(block) < raw_len:
            (chunk_len,) = struct.unpack(">I", view[:4])
            block += bytes(cramjam.snappy.decompress_raw(bytes(view[4 : 4 + chunk_len])))
            view = view[4 + chunk_len :]
        out += block
    return bytes(out)


def main() -> None:
    compression, path = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        data = f.read()
    if compression == "GZIP":
        content = gzip.decompress(data)
    elif compression == "ZIP":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if len(names) != 1:
                sys.exit(f"expected one entry, found {names}")
            content = archive.read(names[0])
    elif compression == "Snappy":
        content = bytes(cramjam.snappy.decompress(data))
    elif compression == "HADOOP_SNAPPY":
        content = hadoop_snappy(data)
    else:
        content = data
    sys.stdout.buffer.write(content)


if __name__ == "__main__":
    main()

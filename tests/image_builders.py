"""Image files that readers meet in the wild and tests need to build."""
import struct


def corrupt_dds():
    """Bytes of a DDS file whose pixel format Pillow does not know: its decoder raises
    NotImplementedError, not the OSError most corrupt files raise."""
    header = struct.pack("<7I", 124, 0x1007, 4, 4, 16, 0, 0) + b"\0" * 44
    pixel_format = struct.pack("<2I4s5I", 32, 8, b"\0\0\0\0", 32, 0, 0, 0, 0)
    return b"DDS " + header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + b"\0" * 64

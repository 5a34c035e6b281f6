#!/usr/bin/env python3
"""SHA-256 of a file as sha256sum computes it, but holes are fed from a zero
buffer found with SEEK_DATA/SEEK_HOLE instead of being read: a 10 GiB sparse
raw output hashes in seconds, not minutes. The file's bytes are read with
plain os.pread, so it shares no code with vdkit's readers."""
import hashlib, os, sys

CHUNK = 8 << 20
ZERO = bytes(CHUNK)

def feed_zero(h, n):
    while n:
        k = min(n, CHUNK)
        h.update(ZERO[:k] if k < CHUNK else ZERO)
        n -= k

def main(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            data = size
        feed_zero(h, data - pos)
        if data >= size:
            break
        end = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        while data < end:
            buf = os.pread(fd, min(CHUNK, end - data), data)
            if not buf:
                sys.exit(f"{path}: short read at offset {data}")
            h.update(buf)
            data += len(buf)
        pos = end
    print(h.hexdigest())

main(sys.argv[1])

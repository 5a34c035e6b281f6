#!/usr/bin/env python3
"""Corrupt one field of a valid VMDK, VHD or VHDX image (made by qemu-img),
for tests/it_damage.sh. Usage: damage.py KIND FILE [ARG]. Each kind edits
FILE in place at the exact field and prints nothing; checksums that cover
the field are recomputed so that only the intended damage remains."""
import struct
import sys
import zlib


def rd(f, off, n):
    f.seek(off)
    return f.read(n)


def wr(f, off, b):
    f.seek(off)
    f.write(b)


# ---- VMDK (hosted sparse, qemu-img layout) -------------------------------

def vmdk_hdr(f):
    h = rd(f, 0, 512)
    v = struct.unpack_from('<IIIQQQQIQQQ', h, 0)
    return dict(cap=v[3], grain=v[4], desc=v[5], desc_n=v[6], gtes=v[7],
                rgd=v[8], gd=v[9], oh=v[10])


def vmdk_gte_slot(f, which=0):
    """File offset of the which-th allocated grain table entry."""
    h = vmdk_hdr(f)
    gd = struct.unpack_from('<I', rd(f, h['gd'] * 512, 4))[0]
    gt = rd(f, gd * 512, 4 * h['gtes'])
    n = 0
    for j in range(h['gtes']):
        if struct.unpack_from('<I', gt, 4 * j)[0] > 1:
            if n == which:
                return gd * 512 + 4 * j, h, gd
            n += 1
    raise SystemExit('no allocated grain')


def vmdk(kind, f, arg):
    if kind == 'gte-desc':
        slot, h, _ = vmdk_gte_slot(f)
        wr(f, slot, struct.pack('<I', h['desc'] + 1))
    elif kind == 'gte-gd':
        slot, h, _ = vmdk_gte_slot(f)
        wr(f, slot, struct.pack('<I', h['gd']))
    elif kind == 'gte-gt':
        slot, h, gd = vmdk_gte_slot(f)
        wr(f, slot, struct.pack('<I', gd))
    elif kind == 'gte-eof':
        slot, _, _ = vmdk_gte_slot(f)
        wr(f, slot, struct.pack('<I', 0x7fffff00))
    elif kind == 'gte-one':
        # GTE 1: a zeroed grain only with the zeroed-grain flag (bit 2)
        slot, _, _ = vmdk_gte_slot(f)
        wr(f, slot, struct.pack('<I', 1))
    elif kind == 'rgd-eof':
        # the redundant GD far past the end (the high half of the field set,
        # as fuzz-diff found it); only qemu-img reads the RGD at open
        wr(f, 52, struct.pack('<I', 0x7fffffff))
    elif kind == 'gte-dup':
        a, _, _ = vmdk_gte_slot(f, 0)
        b, _, _ = vmdk_gte_slot(f, 1)
        wr(f, b, rd(f, a, 4))
    elif kind == 'grain':
        wr(f, 20, struct.pack('<Q', int(arg)))
    elif kind == 'gtes':
        wr(f, 44, struct.pack('<I', int(arg)))
    elif kind == 'overhead':
        wr(f, 64, struct.pack('<Q', 1 << 30))
    elif kind == 'desc-nul':
        h = vmdk_hdr(f)
        d = rd(f, h['desc'] * 512, h['desc_n'] * 512)
        i = d.index(b'\n') + 1  # after the first line, text follows
        wr(f, h['desc'] * 512 + i - 1, b'\0')
    elif kind == 'stream-short':
        stream_short(f)
    elif kind == 'capacity':
        # an extent of a descriptor (FILE is the extent): one grain more
        # than its descriptor line says
        h = vmdk_hdr(f)
        wr(f, 12, struct.pack('<Q', h['cap'] + h['grain']))
    else:
        raise SystemExit('unknown vmdk damage ' + kind)


def stream_short(f):
    """Re-deflate the first grain of a qemu streamOptimized VMDK to half a
    grain of data (a valid zlib stream that inflates short)."""
    slot, h, _ = vmdk_gte_slot(f)
    at = struct.unpack_from('<I', rd(f, slot, 4))[0] * 512
    size = struct.unpack_from('<I', rd(f, at + 8, 4))[0]
    z = zlib.compress(b'\x5a' * (h['grain'] * 512 // 2), 9)
    if len(z) > size:
        raise SystemExit('short grain does not fit')
    wr(f, at + 8, struct.pack('<I', len(z)))
    wr(f, at + 12, z)


# ---- VHD (dynamic) -------------------------------------------------------

def vhd_csum(b, off):
    b = bytearray(b)
    b[off:off + 4] = b'\0\0\0\0'
    return (~sum(b)) & 0xffffffff


def vhd(kind, f, arg):
    foot = rd(f, 0, 512)
    hoff = struct.unpack_from('>Q', foot, 16)[0]
    hdr = bytearray(rd(f, hoff, 1024))
    bat = struct.unpack_from('>Q', hdr, 16)[0]
    maxent = struct.unpack_from('>I', hdr, 28)[0]
    ents = struct.unpack_from('>%dI' % maxent, rd(f, bat, 4 * maxent))
    used = [i for i, v in enumerate(ents) if v != 0xffffffff]
    slot = bat + 4 * used[0]
    f.seek(0, 2)
    fsize = f.tell()
    if kind == 'copy-size':
        # the footer copy at 0 says another size; its checksum still good
        copy = bytearray(foot)
        struct.pack_into('>Q', copy, 48, struct.unpack_from('>Q', copy, 48)[0] * 2)
        struct.pack_into('>I', copy, 64, vhd_csum(copy, 64))
        wr(f, 0, bytes(copy))
    elif kind == 'bat-footer-copy':
        wr(f, slot, struct.pack('>I', 0))
    elif kind == 'bat-header':
        wr(f, slot, struct.pack('>I', hoff // 512))
    elif kind == 'bat-bat':
        wr(f, slot, struct.pack('>I', bat // 512))
    elif kind == 'bat-eof':
        wr(f, slot, struct.pack('>I', fsize // 512 + 8))
    elif kind == 'bat-footer':
        # the last block moved one sector later: it covers the footer
        last = max(used, key=lambda i: ents[i])
        wr(f, bat + 4 * last, struct.pack('>I', ents[last] + 1))
    elif kind == 'bat-overlap':
        # the second block starts one sector into the first: its bitmap is
        # the first block's data
        wr(f, bat + 4 * used[1], struct.pack('>I', ents[used[0]] + 1))
    elif kind == 'bat-dead-eof':
        # one BAT entry more than the disk has blocks, in the BAT's sector
        # padding, pointing past the end: it maps no sector of the disk
        if 4 * (maxent + 1) > (4 * maxent + 511) // 512 * 512:
            raise SystemExit('no padding after the BAT')
        wr(f, bat + 4 * maxent, struct.pack('>I', fsize // 512 + 8))
        struct.pack_into('>I', hdr, 28, maxent + 1)
        struct.pack_into('>I', hdr, 36, vhd_csum(hdr, 36))
        wr(f, hoff, bytes(hdr))
    elif kind in ('max-entries', 'max-small', 'block-size', 'block-small'):
        if kind == 'max-entries':
            struct.pack_into('>I', hdr, 28, 0xffffffff)
        elif kind == 'max-small':
            struct.pack_into('>I', hdr, 28, len(used) and used[-1])
        elif kind == 'block-small':
            struct.pack_into('>I', hdr, 32, 2048)
        else:
            struct.pack_into('>I', hdr, 32, 3 << 20)
        struct.pack_into('>I', hdr, 36, vhd_csum(hdr, 36))
        wr(f, hoff, bytes(hdr))
    else:
        raise SystemExit('unknown vhd damage ' + kind)


# ---- VHDX -----------------------------------------------------------------

def crc32c(data, crc=0):
    t = CRC_T
    crc ^= 0xffffffff
    for b in data:
        crc = t[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_T = _crc_table()
H1, H2 = 64 << 10, 128 << 10


def vhdx_regions(f):
    rt = rd(f, 192 << 10, 64 << 10)
    n = struct.unpack_from('<I', rt, 8)[0]
    out = {}
    for i in range(n):
        e = rt[16 + 32 * i:48 + 32 * i]
        off, ln = struct.unpack_from('<QI', e, 16)
        out['bat' if e[:4] == bytes.fromhex('6677c22d') else 'meta'] = (off, ln)
    return out


def vhdx_hdr_write(f, at, h):
    h = bytearray(h)
    h[4:8] = b'\0\0\0\0'
    struct.pack_into('<I', h, 4, crc32c(h))
    wr(f, at, bytes(h))


def vhdx_cur_hdr(f):
    a, b = rd(f, H1, 4096), rd(f, H2, 4096)
    sa, sb = struct.unpack_from('<Q', a, 8)[0], struct.unpack_from('<Q', b, 8)[0]
    return (H1, a) if sa > sb else (H2, b)


def vhdx_log_entry(f, dest, length):
    """One log entry (sequence 1) that zeroes [dest, dest+length)."""
    at, h = vhdx_cur_hdr(f)
    h = bytearray(h)
    guid = bytes(range(1, 17))
    h[48:64] = guid
    log_len, log_off = struct.unpack_from('<IQ', h, 68)
    f.seek(0, 2)
    fsize = f.tell()
    e = bytearray(4096)
    e[0:4] = b'loge'
    struct.pack_into('<IIQII', e, 8, 4096, 0, 1, 1, 0)
    e[32:48] = guid
    struct.pack_into('<QQ', e, 48, fsize, fsize)
    d = e[64:96]
    d[0:4] = b'zero'
    struct.pack_into('<QQQ', d, 8, length, dest, 1)
    e[64:96] = d
    struct.pack_into('<I', e, 4, crc32c(e))
    wr(f, log_off, bytes(e))
    vhdx_hdr_write(f, at, h)
    return log_off


def vhdx(kind, f, arg):
    rg = vhdx_regions(f)
    bat_off = rg['bat'][0]
    ents = struct.unpack_from('<8Q', rd(f, bat_off, 64))
    slot = next(bat_off + 8 * i for i, v in enumerate(ents) if v & 7 == 6)
    state = struct.unpack_from('<Q', rd(f, slot, 8))[0] & 0xfffff
    f.seek(0, 2)
    fsize = f.tell()
    _, cur = vhdx_cur_hdr(f)
    log_off = struct.unpack_from('<Q', cur, 72)[0]
    target = {'bat-meta': rg['meta'][0], 'bat-bat': bat_off, 'bat-log': log_off,
              'bat-eof': fsize + (64 << 20)}
    if kind in target:
        wr(f, slot, struct.pack('<Q', target[kind] | state))
    elif kind == 'seq-equal':
        a, b = bytearray(rd(f, H1, 4096)), bytearray(rd(f, H2, 4096))
        b[8:16] = a[8:16]
        b[32:48] = bytes(16 * [0xee])  # a different data write GUID
        vhdx_hdr_write(f, H2, b)
    elif kind == 'log-header':
        vhdx_log_entry(f, 64 << 10, 4096)
    elif kind == 'log-self':
        vhdx_log_entry(f, log_off, 4096)
    elif kind == 'log-ok':
        # zeroes the first MiB of virtual block 0: a valid entry
        if slot != bat_off:
            raise SystemExit('block 0 is not allocated')
        vhdx_log_entry(f, struct.unpack_from('<Q', rd(f, slot, 8))[0] & ~0xfffff, 1 << 20)
    else:
        raise SystemExit('unknown vhdx damage ' + kind)


# ---- qcow2 ----------------------------------------------------------------

def qcow2(kind, f, arg):
    if kind == 'rt-offset':
        # a refcount table offset qemu-img's validation rejects (2^63)
        wr(f, 48, struct.pack('>Q', 1 << 63))
    else:
        raise SystemExit('unknown qcow2 damage ' + kind)


def main():
    kind, path = sys.argv[1], sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    fmt, _, what = kind.partition(':')
    with open(path, 'r+b') as f:
        {'vmdk': vmdk, 'vhd': vhd, 'vhdx': vhdx, 'qcow2': qcow2}[fmt](what, f, arg)


main()

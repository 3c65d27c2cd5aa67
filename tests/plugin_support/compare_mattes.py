#!/usr/bin/env python3
"""Compares a host's matte renders with the CLI's mattes, frame by frame, byte for byte.

    compare_mattes.py HOST_OUT_DIR CLI_OUT_DIR

HOST_OUT_DIR: one RGBA PNG per frame (e.g. melt's output of the effect in "Matte only"); its
alpha channel is the matte. CLI_OUT_DIR: `sam2-rotoscope track --bits 8 --out` (object_<id>/
folders of 8-bit grey PNGs, one per frame); the expected matte is their union (the maximum).
Pure Python (zlib): the MLT chroot and the build machines have no PIL. Exit 0 when every frame
is identical; 1 with the first differences otherwise.
"""
import os
import struct
import sys
import zlib


def read_png(path):
    """(width, height, channels, rows of bytes) of a non-interlaced 8-bit PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    w, h, depth, colour, _, _, interlace = header
    if depth != 8 or interlace != 0:
        raise ValueError(f"{path}: depth {depth}, interlace {interlace}: not read")
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, channels, rows


def channel(path, c):
    w, h, channels, rows = read_png(path)
    return w, h, bytes(b for row in rows for b in row[c::channels])


def main():
    host_dir, cli_dir = sys.argv[1], sys.argv[2]
    frames = sorted(f for f in os.listdir(host_dir) if f.endswith(".png"))
    objects = sorted(d for d in os.listdir(cli_dir) if d.startswith("object_"))
    bad = 0
    for i, name in enumerate(frames):
        w, h, got = channel(os.path.join(host_dir, name), 3)
        want = bytearray(w * h)
        for o in objects:
            files = sorted(os.listdir(os.path.join(cli_dir, o)))
            _, _, m = channel(os.path.join(cli_dir, o, files[i]), 0)
            want = bytearray(max(x, y) for x, y in zip(want, m))
        diff = [k for k in range(w * h) if got[k] != want[k]]
        covered = sum(1 for v in want if v)
        if diff:
            bad += 1
            k = diff[0]
            print(f"frame {i} ({name}): {len(diff)} pixels differ; first at ({k % w}, {k // w}): host {got[k]}, CLI {want[k]}")
        else:
            print(f"frame {i} ({name}): identical ({w}x{h}, {covered} matte pixels)")
    print(f"{len(frames) - bad} of {len(frames)} frames identical")
    return 1 if bad or not frames else 0


if __name__ == "__main__":
    sys.exit(main())

// Pixel buffers for the test host: the raw image file format shared with the Rust driver, bit-depth
// and component conversion, and nearest-neighbour resampling for render scales.
//
// Raw image file ("OFXR", version 1), little-endian, a 32-byte header then the samples:
//   0  char[4] "OFXR"          16 u32 width           28 u32 depth: 1 byte (u8), 2 short (u16),
//   4  u32     version = 1     20 u32 height                    3 half (IEEE binary16), 4 float (f32)
//   8  i32     x1 (bounds)     24 u32 components: 1 Alpha, 3 RGB, 4 RGBA
//  12  i32     y1 (bounds)
// Samples are interleaved per pixel, rows tightly packed, the first row is the BOTTOM row (y = y1),
// as OpenFX lays images out. Integer depths are normalised (0..255, 0..65535 = 0..1).
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ofxImageEffect.h"

namespace pixels {

enum Depth { DepthNone = 0, Byte = 1, Short = 2, Half = 3, Float = 4 };

inline int bytesPerSample(Depth d) { return d == Byte ? 1 : d == Float ? 4 : d == DepthNone ? 0 : 2; }

inline Depth depthFromOfx(const std::string &s) {
  if (s == kOfxBitDepthByte) return Byte;
  if (s == kOfxBitDepthShort) return Short;
  if (s == kOfxBitDepthHalf) return Half;
  if (s == kOfxBitDepthFloat) return Float;
  return DepthNone;
}
inline const char *depthToOfx(Depth d) {
  switch (d) {
    case Byte: return kOfxBitDepthByte;
    case Short: return kOfxBitDepthShort;
    case Half: return kOfxBitDepthHalf;
    case Float: return kOfxBitDepthFloat;
    default: return kOfxBitDepthNone;
  }
}
// Protocol names: "byte" | "short" | "half" | "float" (OFX names accepted too).
inline Depth depthFromName(const std::string &s) {
  if (s == "byte" || s == "u8" || s == "8") return Byte;
  if (s == "short" || s == "u16" || s == "16") return Short;
  if (s == "half" || s == "f16") return Half;
  if (s == "float" || s == "f32" || s == "32") return Float;
  Depth d = depthFromOfx(s);
  if (d == DepthNone) throw std::runtime_error("unknown depth '" + s + "' (byte, short, half, float)");
  return d;
}
inline const char *depthName(Depth d) {
  switch (d) {
    case Byte: return "byte";
    case Short: return "short";
    case Half: return "half";
    case Float: return "float";
    default: return "none";
  }
}

inline int componentsFromOfx(const std::string &s) {
  if (s == kOfxImageComponentRGBA) return 4;
  if (s == kOfxImageComponentRGB) return 3;
  if (s == kOfxImageComponentAlpha) return 1;
  return 0;
}
inline const char *componentsToOfx(int n) {
  switch (n) {
    case 4: return kOfxImageComponentRGBA;
    case 3: return kOfxImageComponentRGB;
    case 1: return kOfxImageComponentAlpha;
    default: return kOfxImageComponentNone;
  }
}
inline int componentsFromName(const std::string &s) {
  if (s == "RGBA" || s == "rgba") return 4;
  if (s == "RGB" || s == "rgb") return 3;
  if (s == "Alpha" || s == "alpha" || s == "A") return 1;
  int n = componentsFromOfx(s);
  if (!n) throw std::runtime_error("unknown components '" + s + "' (RGBA, RGB, Alpha)");
  return n;
}
inline const char *componentsName(int n) { return n == 4 ? "RGBA" : n == 3 ? "RGB" : n == 1 ? "Alpha" : "none"; }

// IEEE 754 binary16 <-> binary32, round to nearest even.
inline float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      man &= 0x3FF;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t floatToHalf(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = int32_t((x >> 23) & 0xFF);
  uint32_t man = x & 0x7FFFFF;
  if (exp == 0xFF) return uint16_t(sign | 0x7C00 | (man ? 0x200 : 0));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7C00);
  if (e <= 0) {
    if (e < -10) return uint16_t(sign);
    man |= 0x800000;
    uint32_t shift = uint32_t(14 - e);
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) h++;
    return uint16_t(sign | h);
  }
  uint32_t h = sign | (uint32_t(e) << 10) | (man >> 13);
  uint32_t rem = man & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return uint16_t(h);
}

inline float readSample(const uint8_t *p, Depth d) {
  switch (d) {
    case Byte: return p[0] / 255.0f;
    case Short: { uint16_t v; memcpy(&v, p, 2); return v / 65535.0f; }
    case Half: { uint16_t v; memcpy(&v, p, 2); return halfToFloat(v); }
    case Float: { float v; memcpy(&v, p, 4); return v; }
    default: return 0;
  }
}
inline void writeSample(uint8_t *p, Depth d, float v) {
  switch (d) {
    case Byte: {
      float c = std::isnan(v) ? 0 : v < 0 ? 0 : v > 1 ? 1 : v;
      p[0] = uint8_t(std::lround(c * 255.0f));
      break;
    }
    case Short: {
      float c = std::isnan(v) ? 0 : v < 0 ? 0 : v > 1 ? 1 : v;
      uint16_t s = uint16_t(std::lround(c * 65535.0f));
      memcpy(p, &s, 2);
      break;
    }
    case Half: { uint16_t s = floatToHalf(v); memcpy(p, &s, 2); break; }
    case Float: memcpy(p, &v, 4); break;
    default: break;
  }
}

// A pixel buffer with OFX bounds; rows bottom-up, rowBytes = width * components * bytesPerSample.
struct Buffer {
  int x1 = 0, y1 = 0, width = 0, height = 0, components = 4;
  Depth depth = Float;
  std::vector<uint8_t> data;

  int pixelBytes() const { return components * bytesPerSample(depth); }
  int rowBytes() const { return width * pixelBytes(); }
  void allocate() { data.assign(size_t(rowBytes()) * size_t(height), 0); }
  OfxRectI bounds() const { return OfxRectI{x1, y1, x1 + width, y1 + height}; }
  const uint8_t *pixel(int x, int y) const {
    return data.data() + size_t(y - y1) * rowBytes() + size_t(x - x1) * pixelBytes();
  }
  uint8_t *pixel(int x, int y) { return data.data() + size_t(y - y1) * rowBytes() + size_t(x - x1) * pixelBytes(); }
};

// Reads one pixel as RGBA floats with the host's component mapping:
// RGB -> alpha 1; Alpha -> (0, 0, 0, a).
inline void readRGBA(const uint8_t *p, Depth d, int comps, float rgba[4]) {
  int bs = bytesPerSample(d);
  if (comps == 4) {
    for (int c = 0; c < 4; c++) rgba[c] = readSample(p + c * bs, d);
  } else if (comps == 3) {
    for (int c = 0; c < 3; c++) rgba[c] = readSample(p + c * bs, d);
    rgba[3] = 1;
  } else {
    rgba[0] = rgba[1] = rgba[2] = 0;
    rgba[3] = readSample(p, d);
  }
}
inline void writeRGBA(uint8_t *p, Depth d, int comps, const float rgba[4]) {
  int bs = bytesPerSample(d);
  if (comps == 4) {
    for (int c = 0; c < 4; c++) writeSample(p + c * bs, d, rgba[c]);
  } else if (comps == 3) {
    for (int c = 0; c < 3; c++) writeSample(p + c * bs, d, rgba[c]);
  } else {
    writeSample(p, d, rgba[3]);
  }
}

// Converts `src` to `depth`/`components` and resamples it (nearest neighbour, pixel centres) to the
// given render scale: the result covers ceil(width*sx) x ceil(height*sy) pixels from floor(x1*sx).
inline Buffer convert(const Buffer &src, Depth depth, int components, double sx = 1, double sy = 1) {
  Buffer dst;
  dst.depth = depth;
  dst.components = components;
  dst.x1 = int(std::floor(src.x1 * sx));
  dst.y1 = int(std::floor(src.y1 * sy));
  dst.width = int(std::ceil((src.x1 + src.width) * sx)) - dst.x1;
  dst.height = int(std::ceil((src.y1 + src.height) * sy)) - dst.y1;
  if (dst.width < 0) dst.width = 0;
  if (dst.height < 0) dst.height = 0;
  dst.allocate();
  bool identity = sx == 1 && sy == 1;
  if (identity && src.depth == depth && src.components == components) {
    dst.data = src.data;  // same layout: a plain copy
    return dst;
  }
  for (int y = 0; y < dst.height; y++) {
    int sy0 = identity ? y : int(std::floor((dst.y1 + y + 0.5) / sy)) - src.y1;
    if (sy0 < 0) sy0 = 0;
    if (sy0 >= src.height) sy0 = src.height - 1;
    for (int x = 0; x < dst.width; x++) {
      int sx0 = identity ? x : int(std::floor((dst.x1 + x + 0.5) / sx)) - src.x1;
      if (sx0 < 0) sx0 = 0;
      if (sx0 >= src.width) sx0 = src.width - 1;
      const uint8_t *sp = src.data.data() + size_t(sy0) * src.rowBytes() + size_t(sx0) * src.pixelBytes();
      uint8_t *dp = dst.data.data() + size_t(y) * dst.rowBytes() + size_t(x) * dst.pixelBytes();
      if (src.depth == depth && src.components == components) {
        memcpy(dp, sp, size_t(src.pixelBytes()));
      } else {
        float rgba[4];
        readRGBA(sp, src.depth, src.components, rgba);
        writeRGBA(dp, depth, components, rgba);
      }
    }
  }
  return dst;
}

static const char kMagic[4] = {'O', 'F', 'X', 'R'};

inline void put32(std::vector<uint8_t> &out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(uint8_t(v >> (8 * i)));
}
inline uint32_t get32(const uint8_t *p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

inline Buffer readFile(const std::string &path) {
  FILE *f = fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open image '" + path + "': " + strerror(errno));
  uint8_t h[32];
  if (fread(h, 1, 32, f) != 32 || memcmp(h, kMagic, 4) != 0 || get32(h + 4) != 1) {
    fclose(f);
    throw std::runtime_error("'" + path + "' is not a raw OFXR v1 image");
  }
  Buffer b;
  b.x1 = int32_t(get32(h + 8));
  b.y1 = int32_t(get32(h + 12));
  b.width = int(get32(h + 16));
  b.height = int(get32(h + 20));
  b.components = int(get32(h + 24));
  uint32_t d = get32(h + 28);
  if ((b.components != 1 && b.components != 3 && b.components != 4) || d < 1 || d > 4 || b.width < 0 ||
      b.height < 0 || b.width > 65536 || b.height > 65536) {
    fclose(f);
    throw std::runtime_error("'" + path + "': bad OFXR header");
  }
  b.depth = Depth(d);
  b.allocate();
  size_t n = fread(b.data.data(), 1, b.data.size(), f);
  fclose(f);
  if (n != b.data.size()) throw std::runtime_error("'" + path + "': truncated image data");
  return b;
}

inline void writeFile(const std::string &path, const Buffer &b) {
  std::vector<uint8_t> h(kMagic, kMagic + 4);
  put32(h, 1);
  put32(h, uint32_t(b.x1));
  put32(h, uint32_t(b.y1));
  put32(h, uint32_t(b.width));
  put32(h, uint32_t(b.height));
  put32(h, uint32_t(b.components));
  put32(h, uint32_t(b.depth));
  std::string tmp = path + ".part";
  FILE *f = fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write '" + path + "': " + strerror(errno));
  bool ok = fwrite(h.data(), 1, h.size(), f) == h.size() && fwrite(b.data.data(), 1, b.data.size(), f) == b.data.size();
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    remove(tmp.c_str());
    throw std::runtime_error("cannot write '" + path + "'");
  }
}

}  // namespace pixels

// A small JSON value, parser and writer for the test host's line protocol (one object per line).
// Objects keep insertion order. Numbers are doubles; NaN and infinities are written as null.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace json {

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;

class Value {
 public:
  enum Kind { Null, Bool, Number, String, ArrayKind, ObjectKind };

  Value() : _kind(Null) {}
  Value(std::nullptr_t) : _kind(Null) {}
  Value(bool b) : _kind(Bool), _b(b) {}
  Value(int n) : _kind(Number), _n(n) {}
  Value(unsigned n) : _kind(Number), _n(n) {}
  Value(long n) : _kind(Number), _n(double(n)) {}
  Value(unsigned long n) : _kind(Number), _n(double(n)) {}
  Value(long long n) : _kind(Number), _n(double(n)) {}
  Value(double n) : _kind(Number), _n(n) {}
  Value(const char *s) : _kind(String), _s(s ? s : "") {}
  Value(const std::string &s) : _kind(String), _s(s) {}
  Value(std::string &&s) : _kind(String), _s(std::move(s)) {}
  Value(const Array &a) : _kind(ArrayKind), _a(std::make_shared<Array>(a)) {}
  Value(Array &&a) : _kind(ArrayKind), _a(std::make_shared<Array>(std::move(a))) {}
  Value(const Object &o) : _kind(ObjectKind), _o(std::make_shared<Object>(o)) {}
  Value(Object &&o) : _kind(ObjectKind), _o(std::make_shared<Object>(std::move(o))) {}

  static Value array() { return Value(Array()); }
  static Value object() { return Value(Object()); }

  Kind kind() const { return _kind; }
  bool isNull() const { return _kind == Null; }
  bool isBool() const { return _kind == Bool; }
  bool isNumber() const { return _kind == Number; }
  bool isString() const { return _kind == String; }
  bool isArray() const { return _kind == ArrayKind; }
  bool isObject() const { return _kind == ObjectKind; }

  bool asBool() const {
    if (_kind == Bool) return _b;
    if (_kind == Number) return _n != 0;
    throw std::runtime_error("expected a boolean");
  }
  double asNumber() const {
    if (_kind == Number) return _n;
    if (_kind == Bool) return _b ? 1 : 0;
    throw std::runtime_error("expected a number");
  }
  int asInt() const {
    double d = asNumber();
    if (d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0)
      throw std::runtime_error("expected an integer");
    return int(d);
  }
  const std::string &asString() const {
    if (_kind != String) throw std::runtime_error("expected a string");
    return _s;
  }
  const Array &asArray() const {
    if (_kind != ArrayKind) throw std::runtime_error("expected an array");
    return *_a;
  }
  Array &asArray() {
    if (_kind != ArrayKind) throw std::runtime_error("expected an array");
    own();
    return *_a;
  }
  const Object &asObject() const {
    if (_kind != ObjectKind) throw std::runtime_error("expected an object");
    return *_o;
  }

  // Object access. get() returns null for a missing key (or a non-object).
  const Value &get(const std::string &key) const {
    static const Value null;
    if (_kind != ObjectKind) return null;
    for (const auto &kv : *_o)
      if (kv.first == key) return kv.second;
    return null;
  }
  bool has(const std::string &key) const { return !get(key).isNull(); }
  Value &operator[](const std::string &key) {
    if (_kind == Null) {
      _kind = ObjectKind;
      _o = std::make_shared<Object>();
    }
    if (_kind != ObjectKind) throw std::runtime_error("not an object");
    own();
    for (auto &kv : *_o)
      if (kv.first == key) return kv.second;
    _o->emplace_back(key, Value());
    return _o->back().second;
  }
  void push(const Value &v) {
    if (_kind == Null) {
      _kind = ArrayKind;
      _a = std::make_shared<Array>();
    }
    asArray().push_back(v);
  }
  size_t size() const {
    if (_kind == ArrayKind) return _a->size();
    if (_kind == ObjectKind) return _o->size();
    return 0;
  }

  // Typed lookups with defaults, for command arguments.
  std::string str(const std::string &key, const std::string &def = "") const {
    const Value &v = get(key);
    return v.isNull() ? def : v.asString();
  }
  double num(const std::string &key, double def) const {
    const Value &v = get(key);
    return v.isNull() ? def : v.asNumber();
  }
  int integer(const std::string &key, int def) const {
    const Value &v = get(key);
    return v.isNull() ? def : v.asInt();
  }
  bool boolean(const std::string &key, bool def) const {
    const Value &v = get(key);
    return v.isNull() ? def : v.asBool();
  }

  std::string dump() const {
    std::string out;
    write(out);
    return out;
  }

  void write(std::string &out) const {
    switch (_kind) {
      case Null: out += "null"; break;
      case Bool: out += _b ? "true" : "false"; break;
      case Number: writeNumber(out, _n); break;
      case String: writeString(out, _s); break;
      case ArrayKind: {
        out += '[';
        bool first = true;
        for (const auto &v : *_a) {
          if (!first) out += ',';
          first = false;
          v.write(out);
        }
        out += ']';
        break;
      }
      case ObjectKind: {
        out += '{';
        bool first = true;
        for (const auto &kv : *_o) {
          if (!first) out += ',';
          first = false;
          writeString(out, kv.first);
          out += ':';
          kv.second.write(out);
        }
        out += '}';
        break;
      }
    }
  }

  static void writeNumber(std::string &out, double n) {
    if (!std::isfinite(n)) {
      out += "null";
      return;
    }
    char buf[32];
    if (n == std::floor(n) && std::fabs(n) < 1e15) {
      snprintf(buf, sizeof buf, "%lld", (long long)n);
    } else {
      snprintf(buf, sizeof buf, "%.17g", n);
    }
    out += buf;
  }

  static void writeString(std::string &out, const std::string &s) {
    out += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += char(c);
          }
      }
    }
    out += '"';
  }

 private:
  // Copy on write: values are cheap to copy, and a copy never aliases an edit.
  void own() {
    if (_kind == ArrayKind && _a.use_count() > 1) _a = std::make_shared<Array>(*_a);
    if (_kind == ObjectKind && _o.use_count() > 1) _o = std::make_shared<Object>(*_o);
  }

  Kind _kind;
  bool _b = false;
  double _n = 0;
  std::string _s;
  std::shared_ptr<Array> _a;
  std::shared_ptr<Object> _o;
};

class Parser {
 public:
  explicit Parser(const std::string &text) : _t(text) {}

  Value parse() {
    Value v = value();
    ws();
    if (_i != _t.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const char *what) {
    throw std::runtime_error(std::string("invalid JSON: ") + what + " at offset " + std::to_string(_i));
  }
  void ws() {
    while (_i < _t.size() && (_t[_i] == ' ' || _t[_i] == '\t' || _t[_i] == '\n' || _t[_i] == '\r')) _i++;
  }
  bool lit(const char *s) {
    size_t n = strlen(s);
    if (_t.compare(_i, n, s) == 0) {
      _i += n;
      return true;
    }
    return false;
  }
  Value value() {
    if (++_depth > 200) fail("nesting too deep");
    ws();
    if (_i >= _t.size()) fail("unexpected end");
    Value v;
    char c = _t[_i];
    if (c == '{') {
      _i++;
      Object o;
      ws();
      if (_i < _t.size() && _t[_i] == '}') {
        _i++;
      } else {
        for (;;) {
          ws();
          if (_i >= _t.size() || _t[_i] != '"') fail("expected a key");
          std::string k = string();
          ws();
          if (_i >= _t.size() || _t[_i] != ':') fail("expected ':'");
          _i++;
          o.emplace_back(std::move(k), value());
          ws();
          if (_i < _t.size() && _t[_i] == ',') { _i++; continue; }
          if (_i < _t.size() && _t[_i] == '}') { _i++; break; }
          fail("expected ',' or '}'");
        }
      }
      v = Value(std::move(o));
    } else if (c == '[') {
      _i++;
      Array a;
      ws();
      if (_i < _t.size() && _t[_i] == ']') {
        _i++;
      } else {
        for (;;) {
          a.push_back(value());
          ws();
          if (_i < _t.size() && _t[_i] == ',') { _i++; continue; }
          if (_i < _t.size() && _t[_i] == ']') { _i++; break; }
          fail("expected ',' or ']'");
        }
      }
      v = Value(std::move(a));
    } else if (c == '"') {
      v = Value(string());
    } else if (lit("true")) {
      v = Value(true);
    } else if (lit("false")) {
      v = Value(false);
    } else if (lit("null")) {
      v = Value();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = _i;
      if (_t[_i] == '-') _i++;
      while (_i < _t.size() && (isdigit((unsigned char)_t[_i]) || _t[_i] == '.' || _t[_i] == 'e' ||
                                _t[_i] == 'E' || _t[_i] == '+' || _t[_i] == '-'))
        _i++;
      std::string num = _t.substr(start, _i - start);
      char *end = nullptr;
      double d = strtod(num.c_str(), &end);
      if (!end || *end) fail("bad number");
      v = Value(d);
    } else {
      fail("unexpected character");
    }
    _depth--;
    return v;
  }
  static void utf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (_i + 4 > _t.size()) fail("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      char h = _t[_i++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    _i++;  // opening quote
    std::string out;
    for (;;) {
      if (_i >= _t.size()) fail("unterminated string");
      char c = _t[_i++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (_i >= _t.size()) fail("unterminated escape");
      char e = _t[_i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && _i + 6 <= _t.size() && _t[_i] == '\\' && _t[_i + 1] == 'u') {
            _i += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }

  const std::string &_t;
  size_t _i = 0;
  int _depth = 0;
};

inline Value parse(const std::string &text) { return Parser(text).parse(); }

}  // namespace json

// ofx-host: a headless OpenFX host on the official HostSupport library, scripted over stdin/stdout.
//
// Each line on stdin is one JSON command object {"cmd": "...", ...}; each command gets exactly one
// JSON line back on stdout: {"ok": true, ...} or {"ok": false, "error": "..."}. A plug-in returning an
// error status is a normal answer ({"ok": true, "status": "kOfxStatFailed"}); "ok": false means the
// host could not do what was asked (bad command, unknown parameter, no instance, ...). Anything else
// written to stdout (by HostSupport or a plug-in) is redirected to stderr. If a plug-in crashes the
// process, a last line {"ok": false, "crash": true, "signal": N, "error": "..."} names the action.
// The commands are documented in PROTOCOL.md next to this file.

#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GL/gl.h>

#include "ofxCore.h"
#include "ofxDrawSuite.h"
#include "ofxImageEffect.h"
#include "ofxInteract.h"
#include "ofxKeySyms.h"
#include "ofxMessage.h"
#include "ofxMultiThread.h"
#include "ofxPixels.h"
#include "ofxProgress.h"
#include "ofxTimeLine.h"

// HostSupport's headers depend on this order (the one hostDemo uses).
#include "ofxhBinary.h"
#include "ofxhPropertySuite.h"
#include "ofxhClip.h"
#include "ofxhParam.h"
#include "ofxhMemory.h"
#include "ofxhImageEffect.h"
#include "ofxhPluginAPICache.h"
#include "ofxhPluginCache.h"
#include "ofxhHost.h"
#include "ofxhImageEffectAPI.h"

#include "json.h"
#include "pixels.h"

namespace H = OFX::Host;
namespace IE = OFX::Host::ImageEffect;
using json::Value;

#ifndef OFX_SUPPORTS_MULTITHREAD
#error "build with -DOFX_SUPPORTS_MULTITHREAD (tests/host/build.sh does)"
#endif

////////////////////////////////////////////////////////////////////////////////
// Small helpers

static const char *statName(OfxStatus s) {
  switch (s) {
    case kOfxStatOK: return "kOfxStatOK";
    case kOfxStatFailed: return "kOfxStatFailed";
    case kOfxStatErrFatal: return "kOfxStatErrFatal";
    case kOfxStatErrUnknown: return "kOfxStatErrUnknown";
    case kOfxStatErrMissingHostFeature: return "kOfxStatErrMissingHostFeature";
    case kOfxStatErrUnsupported: return "kOfxStatErrUnsupported";
    case kOfxStatErrExists: return "kOfxStatErrExists";
    case kOfxStatErrFormat: return "kOfxStatErrFormat";
    case kOfxStatErrMemory: return "kOfxStatErrMemory";
    case kOfxStatErrBadHandle: return "kOfxStatErrBadHandle";
    case kOfxStatErrBadIndex: return "kOfxStatErrBadIndex";
    case kOfxStatErrValue: return "kOfxStatErrValue";
    case kOfxStatReplyYes: return "kOfxStatReplyYes";
    case kOfxStatReplyNo: return "kOfxStatReplyNo";
    case kOfxStatReplyDefault: return "kOfxStatReplyDefault";
    case kOfxStatErrImageFormat: return "kOfxStatErrImageFormat";
    case 1001: return "kOfxStatGLOutOfMemory";
    case 1002: return "kOfxStatGLRenderFailed";
    default: {
      static thread_local char buf[32];
      snprintf(buf, sizeof buf, "OfxStatus(%d)", s);
      return buf;
    }
  }
}
static bool okOrDefault(OfxStatus s) { return s == kOfxStatOK || s == kOfxStatReplyDefault; }

struct HostError : std::runtime_error {
  explicit HostError(const std::string &m) : std::runtime_error(m) {}
};

static std::string vformat(const char *format, va_list args) {
  if (!format) return "";
  va_list copy;
  va_copy(copy, args);
  char buf[512];
  int n = vsnprintf(buf, sizeof buf, format, copy);
  va_end(copy);
  if (n < 0) return format;
  if (size_t(n) < sizeof buf) return std::string(buf, size_t(n));
  std::string s(size_t(n) + 1, '\0');
  vsnprintf(&s[0], s.size(), format, args);
  s.resize(size_t(n));
  return s;
}

static double nowMs() {
  using namespace std::chrono;
  static const steady_clock::time_point t0 = steady_clock::now();
  return duration<double, std::milli>(steady_clock::now() - t0).count();
}

static std::string threadTag() {
  std::ostringstream s;
  s << std::this_thread::get_id();
  return s.str();
}

static Value rectJson(const OfxRectD &r) { return Value(json::Array{r.x1, r.y1, r.x2, r.y2}); }
static Value rectJson(const OfxRectI &r) { return Value(json::Array{r.x1, r.y1, r.x2, r.y2}); }

// A bounded, thread-safe event log.
class Log {
 public:
  void add(Value v) {
    std::lock_guard<std::mutex> l(_m);
    if (_entries.size() >= kMax) {
      _dropped++;
      return;
    }
    v["seq"] = double(++_seq);
    _entries.push_back(std::move(v));
  }
  Value take(bool clear) {
    std::lock_guard<std::mutex> l(_m);
    Value out = Value(_entries);
    if (clear) _entries.clear();
    return out;
  }
  size_t dropped() const { return _dropped; }

 private:
  static const size_t kMax = 20000;
  std::mutex _m;
  json::Array _entries;
  size_t _dropped = 0;
  long _seq = 0;
};

////////////////////////////////////////////////////////////////////////////////
// Protocol output and crash reports

static int gProtoFd = -1;
static std::mutex gProtoMutex;

static void writeAll(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= size_t(w);
  }
}

static void emit(const Value &v) {
  std::string s = v.dump();
  s += '\n';
  std::lock_guard<std::mutex> l(gProtoMutex);
  writeAll(gProtoFd, s.data(), s.size());
}

// What the plug-in is doing on this thread, for crash reports (read from a signal handler).
static thread_local char tAction[200];
static char gLastAction[200];  // the main thread's last action (other threads report through tAction)
static std::thread::id gMainThread;

static void copySanitized(char *dst, size_t cap, const char *a, const char *b) {
  size_t n = 0;
  for (const char *s : {a, " / ", b}) {
    for (; s && *s && n + 1 < cap; s++) {
      char c = *s;
      dst[n++] = (c == '"' || c == '\\' || (unsigned char)c < 0x20) ? '_' : c;
    }
  }
  dst[n] = 0;
}

struct ActionScope {
  char saved[200];
  ActionScope(const char *action, const char *who) {
    memcpy(saved, tAction, sizeof saved);
    copySanitized(tAction, sizeof tAction, action, who);
    if (std::this_thread::get_id() == gMainThread) memcpy(gLastAction, tAction, sizeof gLastAction);
  }
  ~ActionScope() { memcpy(tAction, saved, sizeof saved); }
};

static void crashHandler(int sig) {
  char buf[700];
  size_t n = 0;
  auto add = [&](const char *s) {
    while (*s && n + 1 < sizeof buf) buf[n++] = *s++;
  };
  char num[8];
  int v = sig, k = 0;
  char tmp[8];
  do { tmp[k++] = char('0' + v % 10); v /= 10; } while (v && k < 7);
  for (int i = 0; i < k; i++) num[i] = tmp[k - 1 - i];
  num[k] = 0;
  const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE"
                   : sig == SIGILL ? "SIGILL" : sig == SIGABRT ? "SIGABRT" : "signal";
  add("{\"ok\":false,\"crash\":true,\"signal\":");
  add(num);
  add(",\"error\":\"ofx-host crashed with ");
  add(name);
  add(" during: ");
  add(tAction[0] ? tAction : gLastAction[0] ? gLastAction : "host code");
  add("\"}\n");
  if (gProtoFd >= 0) writeAll(gProtoFd, buf, n);
  writeAll(2, buf, n);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void installCrashHandlers() {
  static char altstack[1 << 16];
  stack_t ss;
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  ss.ss_flags = 0;
  sigaltstack(&ss, nullptr);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = crashHandler;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(s, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

////////////////////////////////////////////////////////////////////////////////
// Host configuration, project and sources (what the "timeline" holds)

struct Config {
  std::string hostName = "net.sam2rotoscope.OfxTestHost";
  std::string hostLabel = "SAM 2 Rotoscope Test Host";
  std::string questionReply = "yes";
  std::string outOfRange = "fail";  // input frame outside the clip: "fail" (no image) or "clamp"
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  bool respectThreadSafety = true;
  bool systemPaths = false;  // also scan HostSupport's default /usr/OFX/Plugins
  // Off: the host property says so, and a clip hands over only the frame being rendered (as hosts
  // without temporal clip access do).
  bool temporalAccess = true;
  // How a real batch host (MLT, the engine of Kdenlive and Shotcut) differs; see PROTOCOL.md.
  // "exact": clipGetImage serves the frame asked for; "current_frame": it serves the frame being
  // rendered whatever time is asked (MLT's clipGetImage ignores the time), which implies no
  // temporal clip access.
  enum class ClipFetch { Exact, CurrentFrame } clipFetch = ClipFetch::Exact;
  // Off: clips carry no kOfxImageEffectPropFrameRange / kOfxImageEffectPropUnmappedFrameRange (the
  // property is absent; fetching it fails), while the effect's kOfxImageEffectInstancePropEffectDuration
  // is set (MLT). Read when an instance is made.
  bool clipFrameRange = true;
  // Off: the effect instance carries no project properties (size, offset, extent, pixel aspect
  // ratio, frame rate) nor kOfxImageEffectInstancePropEffectDuration: MLT 7.42 sets them on another
  // property set than the one getPropertySet hands over, so effects never see them. Read when an
  // instance is made.
  bool projectProps = true;
  // Off: the timeline suite's getTime and getTimeBounds answer kOfxStatErrUnsupported (MLT).
  bool timelineBounds = true;
  // On: params whose kOfxParamPropSecret is 1 cannot be listed or set (MLT exposes no secret param).
  bool hideSecretParams = false;
  // On: every render makes a fresh instance of the current instance's plug-in (kOfxActionCreateInstance,
  // param values copied from the current instance, clip preferences, begin sequence [t, t], render,
  // end sequence, kOfxActionDestroyInstance), as MLT does for plug-ins that are not render-unsafe.
  bool frameThreaded = false;
  // "draw_suite": overlays get OfxDrawSuiteV1; "opengl": no Draw Suite, the draw action runs with a
  // current (Mesa, offscreen) OpenGL context and the host reads the pixels back. Read at fetchSuite
  // (plug-ins fetch suites at load): set before `load`.
  enum class OverlayDraw { DrawSuite, OpenGL } overlayDraw = OverlayDraw::DrawSuite;
} gConfig;

struct Source {
  std::vector<pixels::Buffer> frames;
  int first = 0;
  double par = 1, frameRate = 24;
  std::string field = kOfxImageFieldNone, premult;
  pixels::Depth depth = pixels::Float;
  int components = 4;
  std::string outOfRange;  // overrides gConfig.outOfRange when set
  int width() const { return frames.empty() ? 0 : frames[0].width; }
  int height() const { return frames.empty() ? 0 : frames[0].height; }
};

struct Project {
  double width = 1920, height = 1080, offsetX = 0, offsetY = 0, par = 1, frameRate = 24, duration = 1;
  bool explicitlySet = false;
};

static std::mutex gStateMutex;  // guards gSources and gProject
static std::map<std::string, std::shared_ptr<const Source>> gSources;
static Project gProject;
static std::atomic<double> gTime{0};
static std::atomic<long> gLiveImages{0};

static std::shared_ptr<const Source> findSource(const std::string &clip) {
  std::lock_guard<std::mutex> l(gStateMutex);
  auto it = gSources.find(clip);
  return it == gSources.end() ? nullptr : it->second;
}
static Project project() {
  std::lock_guard<std::mutex> l(gStateMutex);
  return gProject;
}

static Log gHostMessages;  // messages posted with a handle that is not a live instance
static std::mutex gSuiteMutex;
static std::map<std::pair<std::string, int>, std::pair<bool, long>> gSuiteRequests;

////////////////////////////////////////////////////////////////////////////////
// Forward declarations

class TestInstance;
class TestOverlay;

struct RenderCtx {
  TestInstance *inst = nullptr;
  double time = 0;
  OfxPointD scale{1, 1};
  std::shared_ptr<pixels::Buffer> out;
  OfxRectI rodPx{0, 0, 0, 0};
  std::string field = kOfxImageFieldNone;
};
static thread_local RenderCtx *tRender = nullptr;
static thread_local unsigned tThreadIndex = 0;
static thread_local bool tSpawned = false;

// Live instances by their OFX handle: suites check handles against it instead of casting blindly.
static std::mutex gLiveMutex;
static std::map<const void *, TestInstance *> gLive;
static TestInstance *liveInstance(const void *handle) {
  std::lock_guard<std::mutex> l(gLiveMutex);
  auto it = gLive.find(handle);
  return it == gLive.end() ? nullptr : it->second;
}

////////////////////////////////////////////////////////////////////////////////
// Parameters: one value store per kind, all reachable through ValueAccess for the protocol.

struct ValueAccess {
  virtual ~ValueAccess() {}
  virtual Value toJson() = 0;
  virtual void fromJson(const Value &v) = 0;  // throws on a value of the wrong shape
};

static std::vector<double> numbers(const Value &v, size_t n, const char *what) {
  std::vector<double> out;
  if (n == 1 && (v.isNumber() || v.isBool())) {
    out.push_back(v.asNumber());
    return out;
  }
  if (!v.isArray() || v.size() != n)
    throw HostError(std::string("expected ") + (n == 1 ? "a number" : std::to_string(n) + " numbers") + " for " + what);
  for (const auto &e : v.asArray()) out.push_back(e.asNumber());
  return out;
}

// Defaults of spatial double params may be normalised to the project (OFX 1.2+).
static void denormaliseDefaults(const H::Property::Set &props, std::vector<double> &v) {
  H::Property::String *cs = props.fetchStringProperty(kOfxParamPropDefaultCoordinateSystem);
  if (!cs || props.getStringProperty(kOfxParamPropDefaultCoordinateSystem) != kOfxParamCoordinatesNormalised) return;
  H::Property::String *dt = props.fetchStringProperty(kOfxParamPropDoubleType);
  if (!dt) return;
  const std::string &t = props.getStringProperty(kOfxParamPropDoubleType);
  Project p = project();
  bool abs = t == kOfxParamDoubleTypeXAbsolute || t == kOfxParamDoubleTypeYAbsolute || t == kOfxParamDoubleTypeXYAbsolute;
  if (t == kOfxParamDoubleTypeX || t == kOfxParamDoubleTypeXAbsolute) {
    v[0] = v[0] * p.width + (abs ? p.offsetX : 0);
  } else if (t == kOfxParamDoubleTypeY || t == kOfxParamDoubleTypeYAbsolute) {
    v[0] = v[0] * p.height + (abs ? p.offsetY : 0);
  } else if ((t == kOfxParamDoubleTypeXY || t == kOfxParamDoubleTypeXYAbsolute) && v.size() >= 2) {
    v[0] = v[0] * p.width + (abs ? p.offsetX : 0);
    v[1] = v[1] * p.height + (abs ? p.offsetY : 0);
  }
}

// N numbers behind a mutex, defaulted from kOfxParamPropDefault.
struct NumStore {
  std::mutex m;
  std::vector<double> v;
  void init(const H::Property::Set &props, size_t n, bool isDouble) {
    v.assign(n, 0);
    if (!props.fetchProperty(kOfxParamPropDefault)) return;
    for (size_t i = 0; i < n; i++) {
      try {
        v[i] = isDouble ? props.getDoubleProperty(kOfxParamPropDefault, int(i)) : props.getIntProperty(kOfxParamPropDefault, int(i));
      } catch (...) {
      }
    }
    if (isDouble) denormaliseDefaults(props, v);
  }
  double get(size_t i) {
    std::lock_guard<std::mutex> l(m);
    return v[i];
  }
  void set(size_t i, double x) {
    std::lock_guard<std::mutex> l(m);
    v[i] = x;
  }
  Value json(bool asInt) {
    std::lock_guard<std::mutex> l(m);
    if (v.size() == 1) return asInt ? Value(int(std::lround(v[0]))) : Value(v[0]);
    json::Array a;
    for (double x : v) a.push_back(asInt ? Value(int(std::lround(x))) : Value(x));
    return Value(a);
  }
  void fromJson(const Value &j, const char *what) {
    std::vector<double> n = numbers(j, v.size(), what);
    std::lock_guard<std::mutex> l(m);
    v = n;
  }
};

#define NUM_ACCESS(IS_INT, WHAT)                                         \
  Value toJson() override { return _s.json(IS_INT); }                    \
  void fromJson(const Value &j) override { _s.fromJson(j, WHAT); }       \
  NumStore _s;

class IntParam : public H::Param::IntegerInstance, public ValueAccess {
 public:
  IntParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : IntegerInstance(d, s) { _s.init(getProperties(), 1, false); }
  OfxStatus get(int &o) override { o = int(_s.get(0)); return kOfxStatOK; }
  OfxStatus get(OfxTime, int &o) override { return get(o); }
  OfxStatus set(int x) override { _s.set(0, x); return kOfxStatOK; }
  OfxStatus set(OfxTime, int x) override { return set(x); }
  NUM_ACCESS(true, "an integer param")
};

class DoubleParam : public H::Param::DoubleInstance, public ValueAccess {
 public:
  DoubleParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : DoubleInstance(d, s) { _s.init(getProperties(), 1, true); }
  OfxStatus get(double &o) override { o = _s.get(0); return kOfxStatOK; }
  OfxStatus get(OfxTime, double &o) override { return get(o); }
  OfxStatus set(double x) override { _s.set(0, x); return kOfxStatOK; }
  OfxStatus set(OfxTime, double x) override { return set(x); }
  OfxStatus derive(OfxTime, double &o) override { o = 0; return kOfxStatOK; }
  OfxStatus integrate(OfxTime t1, OfxTime t2, double &o) override { o = _s.get(0) * (t2 - t1); return kOfxStatOK; }
  NUM_ACCESS(false, "a double param")
};

class BoolParam : public H::Param::BooleanInstance, public ValueAccess {
 public:
  BoolParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : BooleanInstance(d, s) { _s.init(getProperties(), 1, false); }
  OfxStatus get(bool &o) override { o = _s.get(0) != 0; return kOfxStatOK; }
  OfxStatus get(OfxTime, bool &o) override { return get(o); }
  OfxStatus set(bool x) override { _s.set(0, x ? 1 : 0); return kOfxStatOK; }
  OfxStatus set(OfxTime, bool x) override { return set(x); }
  Value toJson() override { return Value(_s.get(0) != 0); }
  void fromJson(const Value &j) override { _s.set(0, j.asBool() ? 1 : 0); }
  NumStore _s;
};

class ChoiceParam : public H::Param::ChoiceInstance, public ValueAccess {
 public:
  ChoiceParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : ChoiceInstance(d, s) { _s.init(getProperties(), 1, false); }
  OfxStatus get(int &o) override { o = int(_s.get(0)); return kOfxStatOK; }
  OfxStatus get(OfxTime, int &o) override { return get(o); }
  OfxStatus set(int x) override { _s.set(0, x); return kOfxStatOK; }
  OfxStatus set(OfxTime, int x) override { return set(x); }
  std::vector<std::string> options() const {
    std::vector<std::string> o;
    int n = getProperties().getDimension(kOfxParamPropChoiceOption);
    for (int i = 0; i < n; i++) o.push_back(getProperties().getStringProperty(kOfxParamPropChoiceOption, i));
    return o;
  }
  Value toJson() override { return Value(int(_s.get(0))); }
  // An index, or the label of an option.
  void fromJson(const Value &j) override {
    if (j.isString()) {
      std::vector<std::string> o = options();
      for (size_t i = 0; i < o.size(); i++)
        if (o[i] == j.asString()) {
          _s.set(0, double(i));
          return;
        }
      throw HostError("no option '" + j.asString() + "' in choice param " + getName());
    }
    _s.set(0, j.asInt());
  }
  NumStore _s;
};

class RGBAParam : public H::Param::RGBAInstance, public ValueAccess {
 public:
  RGBAParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : RGBAInstance(d, s) { _s.init(getProperties(), 4, true); }
  OfxStatus get(double &r, double &g, double &b, double &a) override {
    std::lock_guard<std::mutex> l(_s.m);
    r = _s.v[0]; g = _s.v[1]; b = _s.v[2]; a = _s.v[3];
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, double &r, double &g, double &b, double &a) override { return get(r, g, b, a); }
  OfxStatus set(double r, double g, double b, double a) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {r, g, b, a};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, double r, double g, double b, double a) override { return set(r, g, b, a); }
  NUM_ACCESS(false, "an RGBA param")
};

class RGBParam : public H::Param::RGBInstance, public ValueAccess {
 public:
  RGBParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : RGBInstance(d, s) { _s.init(getProperties(), 3, true); }
  OfxStatus get(double &r, double &g, double &b) override {
    std::lock_guard<std::mutex> l(_s.m);
    r = _s.v[0]; g = _s.v[1]; b = _s.v[2];
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, double &r, double &g, double &b) override { return get(r, g, b); }
  OfxStatus set(double r, double g, double b) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {r, g, b};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, double r, double g, double b) override { return set(r, g, b); }
  NUM_ACCESS(false, "an RGB param")
};

class Double2DParam : public H::Param::Double2DInstance, public ValueAccess {
 public:
  Double2DParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Double2DInstance(d, s) { _s.init(getProperties(), 2, true); }
  OfxStatus get(double &x, double &y) override {
    std::lock_guard<std::mutex> l(_s.m);
    x = _s.v[0]; y = _s.v[1];
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, double &x, double &y) override { return get(x, y); }
  OfxStatus set(double x, double y) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {x, y};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, double x, double y) override { return set(x, y); }
  NUM_ACCESS(false, "a 2D double param")
};

class Integer2DParam : public H::Param::Integer2DInstance, public ValueAccess {
 public:
  Integer2DParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Integer2DInstance(d, s) { _s.init(getProperties(), 2, false); }
  OfxStatus get(int &x, int &y) override {
    std::lock_guard<std::mutex> l(_s.m);
    x = int(_s.v[0]); y = int(_s.v[1]);
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, int &x, int &y) override { return get(x, y); }
  OfxStatus set(int x, int y) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {double(x), double(y)};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, int x, int y) override { return set(x, y); }
  NUM_ACCESS(true, "a 2D integer param")
};

class Double3DParam : public H::Param::Double3DInstance, public ValueAccess {
 public:
  Double3DParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Double3DInstance(d, s) { _s.init(getProperties(), 3, true); }
  OfxStatus get(double &x, double &y, double &z) override {
    std::lock_guard<std::mutex> l(_s.m);
    x = _s.v[0]; y = _s.v[1]; z = _s.v[2];
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, double &x, double &y, double &z) override { return get(x, y, z); }
  OfxStatus set(double x, double y, double z) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {x, y, z};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, double x, double y, double z) override { return set(x, y, z); }
  NUM_ACCESS(false, "a 3D double param")
};

class Integer3DParam : public H::Param::Integer3DInstance, public ValueAccess {
 public:
  Integer3DParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Integer3DInstance(d, s) { _s.init(getProperties(), 3, false); }
  OfxStatus get(int &x, int &y, int &z) override {
    std::lock_guard<std::mutex> l(_s.m);
    x = int(_s.v[0]); y = int(_s.v[1]); z = int(_s.v[2]);
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, int &x, int &y, int &z) override { return get(x, y, z); }
  OfxStatus set(int x, int y, int z) override {
    std::lock_guard<std::mutex> l(_s.m);
    _s.v = {double(x), double(y), double(z)};
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, int x, int y, int z) override { return set(x, y, z); }
  NUM_ACCESS(true, "a 3D integer param")
};

// Strings (and custom params, which are strings). HostSupport returns string values through one
// buffer per param, which races when several render threads read the same param; this keeps one
// buffer per param per thread instead.
template <class Base>
class StringLikeParam : public Base, public ValueAccess {
 public:
  StringLikeParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Base(d, s) {
    if (this->getProperties().fetchProperty(kOfxParamPropDefault)) {
      try {
        _v = this->getProperties().getStringProperty(kOfxParamPropDefault);
      } catch (...) {
      }
    }
  }
  OfxStatus get(std::string &o) override {
    std::lock_guard<std::mutex> l(_m);
    o = _v;
    return kOfxStatOK;
  }
  OfxStatus get(OfxTime, std::string &o) override { return get(o); }
  OfxStatus set(const char *x) override {
    std::lock_guard<std::mutex> l(_m);
    _v = x ? x : "";
    return kOfxStatOK;
  }
  OfxStatus set(OfxTime, const char *x) override { return set(x); }
  OfxStatus getV(va_list arg) override { return getInto(va_arg(arg, const char **)); }
  OfxStatus getV(OfxTime, va_list arg) override { return getInto(va_arg(arg, const char **)); }
  Value toJson() override {
    std::lock_guard<std::mutex> l(_m);
    return Value(_v);
  }
  void fromJson(const Value &j) override {
    std::string s = j.asString();
    std::lock_guard<std::mutex> l(_m);
    _v = s;
  }

 private:
  OfxStatus getInto(const char **out) {
    if (!out) return kOfxStatErrBadHandle;
    static thread_local std::map<const void *, std::string> buffers;
    std::string &b = buffers[this];
    get(b);
    *out = b.c_str();
    return kOfxStatOK;
  }
  std::mutex _m;
  std::string _v;
};
using StringParam = StringLikeParam<H::Param::StringInstance>;
using CustomParam = StringLikeParam<H::Param::CustomInstance>;

class PushButtonParam : public H::Param::PushbuttonInstance {
 public:
  PushButtonParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : PushbuttonInstance(d, s) {}
};

// Parameters of a type this host does not implement (e.g. parametric): present, but every value call
// answers kOfxStatErrUnsupported.
class UnsupportedParam : public H::Param::Instance {
 public:
  UnsupportedParam(H::Param::Descriptor &d, H::Param::SetInstance *s) : Instance(d, s) {}
};

////////////////////////////////////////////////////////////////////////////////
// Images and clips

// HostSupport's property sets keep their map protected and offer no removal; reach it through a
// pointer to member formed in a derived class (as CacheAccess does for the plug-in cache).
struct PropsAccess : H::Property::Set {
  static void remove(H::Property::Set &set, const char *name) {
    H::Property::PropertyMap &m = set.*(&PropsAccess::_props);
    auto it = m.find(name);
    if (it == m.end()) return;
    delete it->second;
    m.erase(it);
  }
};


class TestImage : public IE::Image {
 public:
  TestImage(IE::ClipInstance &clip, std::shared_ptr<pixels::Buffer> buf, const OfxRectI &rod, OfxPointD scale,
            const std::string &field, const std::string &uid)
      : IE::Image(clip, scale.x, scale.y, buf->data.empty() ? nullptr : buf->data.data(), buf->bounds(), rod,
                  buf->rowBytes(), field, uid),
        _buf(std::move(buf)) {
    gLiveImages++;
  }
  ~TestImage() override { gLiveImages--; }
  const pixels::Buffer &buffer() const { return *_buf; }

 private:
  std::shared_ptr<pixels::Buffer> _buf;
};

class TestClip : public IE::ClipInstance {
 public:
  TestClip(TestInstance *inst, IE::ClipDescriptor *d);
  std::shared_ptr<const Source> source() const { return isOutput() ? nullptr : findSource(_name); }

  const std::string &getUnmappedBitDepth() const override;
  const std::string &getUnmappedComponents() const override;
  const std::string &getPremult() const override;
  double getAspectRatio() const override {
    auto s = source();
    return s ? s->par : project().par;
  }
  double getFrameRate() const override {
    auto s = source();
    return s ? s->frameRate : project().frameRate;
  }
  void getFrameRange(double &a, double &b) const override;
  const std::string &getFieldOrder() const override {
    static const std::string none(kOfxImageFieldNone);
    auto s = source();
    if (!s) return none;
    return fieldStore(s->field);
  }
  bool getConnected() const override {
    if (isOutput()) return true;
    auto s = source();
    return s && !s->frames.empty();
  }
  double getUnmappedFrameRate() const override { return getFrameRate(); }
  void getUnmappedFrameRange(double &a, double &b) const override { getFrameRange(a, b); }
  bool getContinuousSamples() const override { return false; }
  IE::Image *getImage(OfxTime time, const OfxRectD *optionalBounds) override;
  OfxRectD getRegionOfDefinition(OfxTime time) const override;

 private:
  static const std::string &fieldStore(const std::string &s) {
    static const std::string none(kOfxImageFieldNone), lower(kOfxImageFieldLower), upper(kOfxImageFieldUpper),
        both(kOfxImageFieldBoth);
    if (s == lower) return lower;
    if (s == upper) return upper;
    if (s == both) return both;
    return none;
  }
  TestInstance *_inst;
  std::string _name;
};

////////////////////////////////////////////////////////////////////////////////
// The overlay interact

class TestOverlay : public IE::OverlayInteract {
 public:
  explicit TestOverlay(IE::Instance &inst) : IE::OverlayInteract(inst, 8, true) {
    H::Property::PropSpec s = {kOfxInteractPropDrawContext, H::Property::ePointer, 1, true, nullptr};
    _argProperties.createProperty(s);
  }
  // HostSupport's destructor calls kOfxActionDestroyInstance even when creation failed, and lets a
  // C++ exception from the plug-in escape a destructor (std::terminate). Destroy here instead: only
  // a created interact, exceptions caught; then mark it failed so the base destructor stays quiet.
  ~TestOverlay() override {
    if (_state == H::Interact::eCreated) {
      try {
        callEntry(kOfxActionDestroyInstance, nullptr);
      } catch (...) {
      }
    }
    _state = H::Interact::eFailed;
  }
  void getViewportSize(double &w, double &h) const override {
    Project p = project();
    w = p.width;
    h = p.height;
  }
  void getPixelScale(double &x, double &y) const override {
    x = pixelScale[0];
    y = pixelScale[1];
  }
  void getBackgroundColour(double &r, double &g, double &b) const override { r = g = b = 0; }
  bool getSuggestedColour(double &, double &, double &) const override { return false; }
  OfxStatus swapBuffers() override {
    swaps++;
    return kOfxStatOK;
  }
  OfxStatus redraw() override {
    redraws++;
    return kOfxStatOK;
  }
  OfxStatus drawWith(void *drawContext, OfxTime time, const OfxPointD &scale) {
    _argProperties.setPointerProperty(kOfxInteractPropDrawContext, drawContext);
    OfxStatus st = drawAction(time, scale);
    _argProperties.setPointerProperty(kOfxInteractPropDrawContext, nullptr);
    return st;
  }
  H::Interact::State state() const { return _state; }
  std::atomic<long> redraws{0}, swaps{0};
  double pixelScale[2] = {1, 1};
};

////////////////////////////////////////////////////////////////////////////////
// The effect instance

class TestInstance : public IE::Instance {
 public:
  TestInstance(IE::ImageEffectPlugin *plugin, IE::Descriptor &desc, const std::string &context, bool interactive)
      : IE::Instance(plugin, desc, context, interactive), _pluginId(plugin->getIdentifier()) {
    if (!gConfig.projectProps) {  // a host whose effects see no project (MLT)
      for (const char *name : {kOfxImageEffectPropProjectSize, kOfxImageEffectPropProjectOffset, kOfxImageEffectPropProjectExtent,
                               kOfxImageEffectPropProjectPixelAspectRatio, kOfxImageEffectInstancePropEffectDuration,
                               kOfxImageEffectPropFrameRate})
        PropsAccess::remove(getProps(), name);
    }
    std::lock_guard<std::mutex> l(gLiveMutex);
    gLive[getHandle()] = this;
  }

  ~TestInstance() override {
    destroyNow();
    std::lock_guard<std::mutex> l(gLiveMutex);
    gLive.erase(getHandle());
  }

  bool created() const { return _created; }
  // kOfxActionDestroyInstance (once), while this object's logs still exist.
  void destroyNow() {
    overlay.reset();
    if (_created) {
      mainEntry(kOfxActionDestroyInstance, getHandle(), nullptr, nullptr);
      _created = false;
    }
  }
  const std::string &pluginId() const { return _pluginId; }

  // --- IE::Instance ---
  const std::string &getDefaultOutputFielding() const override {
    static const std::string v(kOfxImageFieldNone);
    return v;
  }
  IE::ClipInstance *newClipInstance(IE::Instance *, IE::ClipDescriptor *d, int) override { return new TestClip(this, d); }

  OfxStatus vmessage(const char *type, const char *id, const char *format, va_list args) override {
    std::string text = vformat(format, args);
    Value m;
    m["type"] = type ? type : "";
    m["id"] = id ? id : "";
    m["text"] = text;
    m["persistent"] = false;
    messages.add(m);
    if (type && strcmp(type, kOfxMessageQuestion) == 0)
      return gConfig.questionReply == "no" ? kOfxStatReplyNo : kOfxStatReplyYes;
    return kOfxStatOK;
  }
  OfxStatus setPersistentMessage(const char *type, const char *id, const char *format, va_list args) override {
    Value m;
    m["type"] = type ? type : "";
    m["id"] = id ? id : "";
    m["text"] = vformat(format, args);
    {
      std::lock_guard<std::mutex> l(_stateMutex);
      _persistent = m;
    }
    m["persistent"] = true;
    messages.add(m);
    return kOfxStatOK;
  }
  OfxStatus clearPersistentMessage() override {
    std::lock_guard<std::mutex> l(_stateMutex);
    if (_persistent.isNull()) return kOfxStatOK;  // log only real changes
    _persistent = Value();
    Value m;
    m["type"] = "clear";
    m["persistent"] = true;
    messages.add(m);
    return kOfxStatOK;
  }
  Value persistentMessage() {
    std::lock_guard<std::mutex> l(_stateMutex);
    return _persistent;
  }
  // Frame-threaded renders: the project instance shows what the last frame's instance left.
  void setPersistentValue(const Value &v) {
    std::lock_guard<std::mutex> l(_stateMutex);
    _persistent = v;
  }

  void getProjectSize(double &x, double &y) const override {
    Project p = project();
    x = p.width;
    y = p.height;
  }
  void getProjectOffset(double &x, double &y) const override {
    Project p = project();
    x = p.offsetX;
    y = p.offsetY;
  }
  void getProjectExtent(double &x, double &y) const override {
    Project p = project();
    x = p.offsetX + p.width;
    y = p.offsetY + p.height;
  }
  double getProjectPixelAspectRatio() const override { return project().par; }
  double getEffectDuration() const override { return project().duration; }
  double getFrameRate() const override { return project().frameRate; }
  double getFrameRecursive() const override { return gTime.load(); }
  void getRenderScaleRecursive(double &x, double &y) const override { x = y = 1.0; }

  H::Param::Instance *newParam(const std::string &, H::Param::Descriptor &d) override {
    const std::string &t = d.getType();
    if (t == kOfxParamTypeInteger) return new IntParam(d, this);
    if (t == kOfxParamTypeDouble) return new DoubleParam(d, this);
    if (t == kOfxParamTypeBoolean) return new BoolParam(d, this);
    if (t == kOfxParamTypeChoice) return new ChoiceParam(d, this);
    if (t == kOfxParamTypeRGBA) return new RGBAParam(d, this);
    if (t == kOfxParamTypeRGB) return new RGBParam(d, this);
    if (t == kOfxParamTypeDouble2D) return new Double2DParam(d, this);
    if (t == kOfxParamTypeInteger2D) return new Integer2DParam(d, this);
    if (t == kOfxParamTypeDouble3D) return new Double3DParam(d, this);
    if (t == kOfxParamTypeInteger3D) return new Integer3DParam(d, this);
    if (t == kOfxParamTypeString) return new StringParam(d, this);
    if (t == kOfxParamTypeCustom) return new CustomParam(d, this);
    if (t == kOfxParamTypePushButton) return new PushButtonParam(d, this);
    if (t == kOfxParamTypeGroup) return new H::Param::GroupInstance(d, this);
    if (t == kOfxParamTypePage) return new H::Param::PageInstance(d, this);
    return new UnsupportedParam(d, this);
  }
  OfxStatus editBegin(const std::string &name) override {
    Value e;
    e["action"] = "paramEditBegin";
    e["name"] = name;
    events.add(e);
    return kOfxStatOK;
  }
  OfxStatus editEnd() override {
    Value e;
    e["action"] = "paramEditEnd";
    events.add(e);
    return kOfxStatOK;
  }

  void progressStart(const std::string &message, const std::string &messageId) override {
    Value e;
    e["kind"] = "start";
    e["message"] = message;
    e["id"] = messageId;
    e["ms"] = nowMs();
    progress.add(e);
  }
  void progressEnd() override {
    Value e;
    e["kind"] = "end";
    e["ms"] = nowMs();
    progress.add(e);
  }
  bool progressUpdate(double t) override {
    Value e;
    e["kind"] = "update";
    e["value"] = t;
    e["ms"] = nowMs();
    progress.add(e);
    if (t >= abortAtProgress) abortFlag = true;
    return !abortFlag.load();
  }

  double timeLineGetTime() override { return gTime.load(); }
  void timeLineGotoTime(double t) override {
    gTime = t;
    Value e;
    e["action"] = "timeLineGotoTime";
    e["time"] = t;
    events.add(e);
  }
  void timeLineGetBounds(double &t1, double &t2) override {
    auto s = findSource(kOfxImageEffectSimpleSourceClipName);
    if (s && !s->frames.empty()) {
      t1 = s->first;
      t2 = s->first + double(s->frames.size()) - 1;
    } else {
      t1 = 0;
      t2 = std::max(0.0, project().duration - 1);
    }
  }

  int abort() override {
    long polls = ++abortPolls;
    if (abortAfterPolls >= 0 && polls > abortAfterPolls) abortFlag = true;
    if (abortDeadlineMs >= 0 && nowMs() >= abortDeadlineMs) abortFlag = true;
    return abortFlag.load() ? 1 : 0;
  }

  OfxStatus mainEntry(const char *action, const void *handle, H::Property::Set *inArgs, H::Property::Set *outArgs) override {
    ActionScope scope(action, _pluginId.c_str());
    double t0 = nowMs();
    OfxStatus st = IE::Instance::mainEntry(action, handle, inArgs, outArgs);
    Value e;
    e["action"] = action;
    e["status"] = statName(st);
    e["thread"] = threadTag();
    e["ms"] = nowMs() - t0;
    if (inArgs) {
      try {
        if (inArgs->fetchProperty(kOfxPropName)) e["name"] = inArgs->getStringProperty(kOfxPropName);
        if (inArgs->fetchProperty(kOfxPropChangeReason)) e["reason"] = inArgs->getStringProperty(kOfxPropChangeReason);
        if (inArgs->fetchProperty(kOfxPropTime)) e["time"] = inArgs->getDoubleProperty(kOfxPropTime);
      } catch (...) {
      }
    }
    events.add(e);
    return st;
  }

  void paramChangedByPlugin(H::Param::Instance *param) override {
    Value e;
    e["name"] = param->getName();
    e["thread"] = threadTag();
    pluginChanges.add(e);
    {
      std::lock_guard<std::mutex> l(_stateMutex);
      _changedSinceMark.push_back(param->getName());
    }
    IE::Instance::paramChangedByPlugin(param);
  }
  // Names of params the plug-in set since the last call.
  Value takeChanged() {
    std::lock_guard<std::mutex> l(_stateMutex);
    json::Array a;
    for (auto &n : _changedSinceMark) a.push_back(n);
    _changedSinceMark.clear();
    return Value(a);
  }

  // The render this thread is doing for this instance; for threads the plug-in spawned itself, the
  // only render in flight, if there is just one.
  RenderCtx *currentRender() {
    if (tRender && tRender->inst == this) return tRender;
    std::lock_guard<std::mutex> l(_activeMutex);
    return _active.size() == 1 ? _active[0] : nullptr;
  }
  void addActive(RenderCtx *c) {
    std::lock_guard<std::mutex> l(_activeMutex);
    _active.push_back(c);
  }
  void removeActive(RenderCtx *c) {
    std::lock_guard<std::mutex> l(_activeMutex);
    _active.erase(std::remove(_active.begin(), _active.end(), c), _active.end());
  }

  Log messages, progress, events, fetches, pluginChanges;
  std::unique_ptr<TestOverlay> overlay;
  std::set<int> heldKeys;
  std::atomic<bool> abortFlag{false};
  std::atomic<long> abortPolls{0};
  long abortAfterPolls = -1;
  double abortAtProgress = 1e300, abortDeadlineMs = -1;
  std::mutex renderMutex;
  std::atomic<int> rendersInFlight{0}, maxRendersInFlight{0};
  std::atomic<double> lastRenderTime{std::nan("")};
  std::string overlayEntry;  // "V1" or "V2": the overlay entry this host chose  // the last frame a render started (current-frame fetch)

 private:
  std::string _pluginId;
  std::mutex _stateMutex;
  Value _persistent;
  std::vector<std::string> _changedSinceMark;
  std::mutex _activeMutex;
  std::vector<RenderCtx *> _active;
};

////////////////////////////////////////////////////////////////////////////////
// Clip implementation (needs TestInstance)

TestClip::TestClip(TestInstance *inst, IE::ClipDescriptor *d) : IE::ClipInstance(inst, *d), _inst(inst), _name(d->getName()) {
  if (!gConfig.clipFrameRange) {  // a host that never sets the clip's frame range (MLT)
    PropsAccess::remove(getProps(), kOfxImageEffectPropFrameRange);
    PropsAccess::remove(getProps(), kOfxImageEffectPropUnmappedFrameRange);
  }
}

const std::string &TestClip::getUnmappedBitDepth() const {
  static const std::string none(kOfxBitDepthNone), byte(kOfxBitDepthByte), shrt(kOfxBitDepthShort),
      half(kOfxBitDepthHalf), flt(kOfxBitDepthFloat);
  if (isOutput()) return flt;
  auto s = source();
  if (!s || s->frames.empty()) return none;
  switch (s->depth) {
    case pixels::Byte: return byte;
    case pixels::Short: return shrt;
    case pixels::Half: return half;
    case pixels::Float: return flt;
    default: return none;
  }
}

const std::string &TestClip::getUnmappedComponents() const {
  static const std::string none(kOfxImageComponentNone), rgba(kOfxImageComponentRGBA), rgb(kOfxImageComponentRGB),
      alpha(kOfxImageComponentAlpha);
  if (isOutput()) return rgba;
  auto s = source();
  if (!s || s->frames.empty()) return none;
  return s->components == 4 ? rgba : s->components == 3 ? rgb : alpha;
}

const std::string &TestClip::getPremult() const {
  static const std::string opaque(kOfxImageOpaque), pre(kOfxImagePreMultiplied), unpre(kOfxImageUnPreMultiplied);
  if (isOutput()) {
    const std::string &p = _effectInstance->getOutputPreMultiplication();
    return p == pre ? pre : p == unpre ? unpre : opaque;
  }
  auto s = source();
  if (!s || s->frames.empty()) return opaque;
  if (s->premult == kOfxImagePreMultiplied) return pre;
  if (s->premult == kOfxImageUnPreMultiplied) return unpre;
  return opaque;
}

void TestClip::getFrameRange(double &a, double &b) const {
  auto s = source();
  if (s && !s->frames.empty()) {
    a = s->first;
    b = s->first + double(s->frames.size()) - 1;
    return;
  }
  auto src = findSource(kOfxImageEffectSimpleSourceClipName);
  if (isOutput() && src && !src->frames.empty()) {
    a = src->first;
    b = src->first + double(src->frames.size()) - 1;
    return;
  }
  a = 0;
  b = std::max(0.0, project().duration - 1);
}

OfxRectD TestClip::getRegionOfDefinition(OfxTime) const {
  OfxRectD r{0, 0, 0, 0};
  auto s = source();
  if (isOutput()) s = findSource(kOfxImageEffectSimpleSourceClipName);
  if (s && !s->frames.empty()) {
    r.x2 = s->width() * s->par;
    r.y2 = s->height();
  } else if (isOutput()) {
    Project p = project();
    r.x1 = p.offsetX;
    r.y1 = p.offsetY;
    r.x2 = p.offsetX + p.width;
    r.y2 = p.offsetY + p.height;
  }
  return r;
}

IE::Image *TestClip::getImage(OfxTime time, const OfxRectD *optionalBounds) {
  RenderCtx *ctx = _inst->currentRender();
  Value log;
  log["clip"] = _name;
  log["time"] = time;
  log["in_render"] = ctx != nullptr;
  log["thread"] = threadTag();
  if (optionalBounds) log["bounds"] = rectJson(*optionalBounds);
  auto fail = [&](const std::string &why) -> IE::Image * {
    log["ok"] = false;
    log["why"] = why;
    _inst->fetches.add(log);
    return nullptr;
  };

  if (isOutput()) {
    if (!ctx) return fail("the output image exists only during a render");
    std::ostringstream uid;
    uid << "Output@" << ctx->time;
    log["ok"] = true;
    _inst->fetches.add(log);
    return new TestImage(*this, ctx->out, ctx->rodPx, ctx->scale, ctx->field, uid.str());
  }

  auto s = source();
  if (!s || s->frames.empty()) return fail("clip not connected");
  long frame = std::lround(time);
  if (gConfig.clipFetch == Config::ClipFetch::CurrentFrame) {
    // MLT: the clip holds the frame being rendered, whatever time is asked; outside a render, the
    // frame this instance rendered last.
    double last = _inst->lastRenderTime.load();
    if (ctx) frame = std::lround(ctx->time);
    else if (!std::isnan(last)) frame = std::lround(last);
    else return fail("no frame rendered yet (current-frame clip fetch)");
  } else if (!gConfig.temporalAccess && (!ctx || std::lround(time) != std::lround(ctx->time))) {
    return fail("no temporal clip access: only the frame being rendered");
  }
  long index = frame - s->first;
  const std::string &oor = s->outOfRange.empty() ? gConfig.outOfRange : s->outOfRange;
  if (index < 0 || index >= long(s->frames.size())) {
    if (oor != "clamp") return fail("frame outside the clip");
    index = std::max(0L, std::min(long(s->frames.size()) - 1, index));
  }
  pixels::Depth depth = pixels::depthFromOfx(getPixelDepth());
  int comps = pixels::componentsFromOfx(getComponents());
  if (depth == pixels::DepthNone || !comps) return fail("clip has no pixel depth/components (clip preferences)");
  OfxPointD scale = ctx ? ctx->scale : OfxPointD{1, 1};
  auto buf = std::make_shared<pixels::Buffer>(pixels::convert(s->frames[size_t(index)], depth, comps, scale.x, scale.y));
  log["frame"] = double(s->first + index);
  log["ok"] = true;
  log["render_scale"] = Value(json::Array{scale.x, scale.y});
  _inst->fetches.add(log);
  std::ostringstream uid;
  uid << _name << "@" << (s->first + index) << "@" << scale.x << "x" << scale.y;
  return new TestImage(*this, buf, buf->bounds(), scale, getFieldOrder(), uid.str());
}

////////////////////////////////////////////////////////////////////////////////
// Host-side suites: message, progress and timeline check the handle against the live instances
// (HostSupport's versions cast any handle to an instance); the draw suite is not in HostSupport.

static OfxStatus msgMessage(void *handle, const char *type, const char *id, const char *format, ...) {
  va_list args;
  va_start(args, format);
  OfxStatus st;
  if (TestInstance *i = liveInstance(handle)) {
    st = i->vmessage(type, id, format, args);
  } else {
    Value m;
    m["type"] = type ? type : "";
    m["id"] = id ? id : "";
    m["text"] = vformat(format, args);
    m["handle"] = handle ? "not an instance" : "null";
    gHostMessages.add(m);
    st = (type && strcmp(type, kOfxMessageQuestion) == 0) ? (gConfig.questionReply == "no" ? kOfxStatReplyNo : kOfxStatReplyYes)
                                                          : kOfxStatOK;
  }
  va_end(args);
  return st;
}
static OfxStatus msgSetPersistent(void *handle, const char *type, const char *id, const char *format, ...) {
  TestInstance *i = liveInstance(handle);
  if (!i) return kOfxStatErrBadHandle;
  va_list args;
  va_start(args, format);
  OfxStatus st = i->setPersistentMessage(type, id, format, args);
  va_end(args);
  return st;
}
static OfxStatus msgClearPersistent(void *handle) {
  TestInstance *i = liveInstance(handle);
  return i ? i->clearPersistentMessage() : kOfxStatErrBadHandle;
}
static const OfxMessageSuiteV2 gMessageSuite = {msgMessage, msgSetPersistent, msgClearPersistent};

static OfxStatus progStartV1(void *h, const char *label) {
  TestInstance *i = liveInstance(h);
  if (!i) return kOfxStatErrBadHandle;
  i->progressStart(label ? label : "", "");
  return kOfxStatOK;
}
static OfxStatus progStart(void *h, const char *message, const char *id) {
  TestInstance *i = liveInstance(h);
  if (!i) return kOfxStatErrBadHandle;
  i->progressStart(message ? message : "", id ? id : "");
  return kOfxStatOK;
}
static OfxStatus progUpdate(void *h, double p) {
  TestInstance *i = liveInstance(h);
  if (!i) return kOfxStatErrBadHandle;
  return i->progressUpdate(p) ? kOfxStatOK : kOfxStatReplyNo;
}
static OfxStatus progEnd(void *h) {
  TestInstance *i = liveInstance(h);
  if (!i) return kOfxStatErrBadHandle;
  i->progressEnd();
  return kOfxStatOK;
}
static const OfxProgressSuiteV1 gProgressV1 = {progStartV1, progUpdate, progEnd};
static const OfxProgressSuiteV2 gProgressV2 = {progStart, progUpdate, progEnd};

static OfxStatus tlGetTime(void *h, double *t) {
  TestInstance *i = liveInstance(h);
  if (!i || !t) return kOfxStatErrBadHandle;
  if (!gConfig.timelineBounds) return kOfxStatErrUnsupported;
  *t = i->timeLineGetTime();
  return kOfxStatOK;
}
static OfxStatus tlGotoTime(void *h, double t) {
  TestInstance *i = liveInstance(h);
  if (!i) return kOfxStatErrBadHandle;
  i->timeLineGotoTime(t);
  return kOfxStatOK;
}
static OfxStatus tlGetBounds(void *h, double *a, double *b) {
  TestInstance *i = liveInstance(h);
  if (!i || !a || !b) return kOfxStatErrBadHandle;
  if (!gConfig.timelineBounds) return kOfxStatErrUnsupported;
  i->timeLineGetBounds(*a, *b);
  return kOfxStatOK;
}
static const OfxTimeLineSuiteV1 gTimeLineSuite = {tlGetTime, tlGotoTime, tlGetBounds};

// Draw suite: records what the overlay draws.
struct DrawContext {
  static const int kMagic = 0x0fd4a3;
  int magic = kMagic;
  json::Array ops;
  float colour[4] = {1, 1, 1, 1};
};
static DrawContext *drawCtx(OfxDrawContextHandle h) {
  DrawContext *c = reinterpret_cast<DrawContext *>(h);
  return (c && c->magic == DrawContext::kMagic) ? c : nullptr;
}
static OfxStatus drawGetColour(OfxDrawContextHandle h, OfxStandardColour which, OfxRGBAColourF *colour) {
  if (!drawCtx(h) || !colour) return kOfxStatErrBadHandle;
  static const float table[7][4] = {{0, 0, 0, 1}, {1, 1, 0, 1}, {1, 0.5f, 0, 1}, {0.6f, 0.6f, 0.6f, 1},
                                    {1, 1, 1, 1}, {0, 0, 0, 1},    {1, 1, 1, 1}};
  int k = int(which);
  if (k < 0 || k > 6) return kOfxStatErrValue;
  colour->r = table[k][0];
  colour->g = table[k][1];
  colour->b = table[k][2];
  colour->a = table[k][3];
  return kOfxStatOK;
}
static OfxStatus drawSetColour(OfxDrawContextHandle h, const OfxRGBAColourF *colour) {
  DrawContext *c = drawCtx(h);
  if (!c || !colour) return kOfxStatErrBadHandle;
  c->colour[0] = colour->r;
  c->colour[1] = colour->g;
  c->colour[2] = colour->b;
  c->colour[3] = colour->a;
  Value op;
  op["op"] = "colour";
  op["rgba"] = Value(json::Array{colour->r, colour->g, colour->b, colour->a});
  c->ops.push_back(op);
  return kOfxStatOK;
}
static OfxStatus drawSetLineWidth(OfxDrawContextHandle h, float w) {
  DrawContext *c = drawCtx(h);
  if (!c) return kOfxStatErrBadHandle;
  Value op;
  op["op"] = "line_width";
  op["width"] = w;
  c->ops.push_back(op);
  return kOfxStatOK;
}
static OfxStatus drawSetLineStipple(OfxDrawContextHandle h, OfxDrawLineStipplePattern p) {
  DrawContext *c = drawCtx(h);
  if (!c) return kOfxStatErrBadHandle;
  Value op;
  op["op"] = "line_stipple";
  op["pattern"] = int(p);
  c->ops.push_back(op);
  return kOfxStatOK;
}
static OfxStatus drawDraw(OfxDrawContextHandle h, OfxDrawPrimitive prim, const OfxPointD *points, int n) {
  DrawContext *c = drawCtx(h);
  if (!c) return kOfxStatErrBadHandle;
  if (n < 0 || (n > 0 && !points)) return kOfxStatErrValue;
  static const char *names[] = {"lines", "line_strip", "line_loop", "rectangle", "polygon", "ellipse"};
  int k = int(prim);
  if (k < 0 || k > 5) return kOfxStatErrValue;
  if ((prim == kOfxDrawPrimitiveRectangle || prim == kOfxDrawPrimitiveEllipse) && n != 2) return kOfxStatErrValue;
  if (prim == kOfxDrawPrimitiveLines && n % 2 != 0) return kOfxStatErrValue;
  Value op;
  op["op"] = "draw";
  op["primitive"] = names[k];
  json::Array pts;
  for (int i = 0; i < n; i++) pts.push_back(Value(json::Array{points[i].x, points[i].y}));
  op["points"] = Value(pts);
  op["rgba"] = Value(json::Array{c->colour[0], c->colour[1], c->colour[2], c->colour[3]});
  c->ops.push_back(op);
  return kOfxStatOK;
}
static OfxStatus drawText(OfxDrawContextHandle h, const char *text, const OfxPointD *pos, int alignment) {
  DrawContext *c = drawCtx(h);
  if (!c) return kOfxStatErrBadHandle;
  if (!text || !pos) return kOfxStatErrValue;
  Value op;
  op["op"] = "text";
  op["text"] = text;
  op["pos"] = Value(json::Array{pos->x, pos->y});
  op["alignment"] = alignment;
  c->ops.push_back(op);
  return kOfxStatOK;
}
static const OfxDrawSuiteV1 gDrawSuite = {drawGetColour, drawSetColour, drawSetLineWidth, drawSetLineStipple, drawDraw, drawText};

////////////////////////////////////////////////////////////////////////////////
// The host descriptor

struct HostMutex {
  std::recursive_mutex m;
};

class TestHost : public IE::Host {
 public:
  TestHost() { applyProperties(); }

  void applyProperties() {
    _properties.setIntProperty(kOfxPropAPIVersion, 1, 0);
    _properties.setIntProperty(kOfxPropAPIVersion, 4, 1);
    _properties.setStringProperty(kOfxPropName, gConfig.hostName);
    _properties.setStringProperty(kOfxPropLabel, gConfig.hostLabel);
    _properties.setIntProperty(kOfxPropVersion, 1, 0);
    _properties.setIntProperty(kOfxPropVersion, 0, 1);
    _properties.setIntProperty(kOfxPropVersion, 0, 2);
    _properties.setStringProperty(kOfxPropVersionLabel, "1.0");
    _properties.setIntProperty(kOfxImageEffectHostPropIsBackground, 0);
    _properties.setIntProperty(kOfxImageEffectPropSupportsOverlays, 1);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultiResolution, 1);
    _properties.setIntProperty(kOfxImageEffectPropSupportsTiles, 1);
    _properties.setIntProperty(kOfxImageEffectPropTemporalClipAccess,
                               gConfig.temporalAccess && gConfig.clipFetch == Config::ClipFetch::Exact ? 1 : 0);
    _properties.setStringProperty(kOfxImageEffectPropSupportedComponents, kOfxImageComponentRGBA, 0);
    _properties.setStringProperty(kOfxImageEffectPropSupportedComponents, kOfxImageComponentRGB, 1);
    _properties.setStringProperty(kOfxImageEffectPropSupportedComponents, kOfxImageComponentAlpha, 2);
    _properties.setStringProperty(kOfxImageEffectPropSupportedPixelDepths, kOfxBitDepthByte, 0);
    _properties.setStringProperty(kOfxImageEffectPropSupportedPixelDepths, kOfxBitDepthShort, 1);
    _properties.setStringProperty(kOfxImageEffectPropSupportedPixelDepths, kOfxBitDepthHalf, 2);
    _properties.setStringProperty(kOfxImageEffectPropSupportedPixelDepths, kOfxBitDepthFloat, 3);
    _properties.setStringProperty(kOfxImageEffectPropSupportedContexts, kOfxImageEffectContextFilter, 0);
    _properties.setStringProperty(kOfxImageEffectPropSupportedContexts, kOfxImageEffectContextGeneral, 1);
    _properties.setStringProperty(kOfxImageEffectPropSupportedContexts, kOfxImageEffectContextGenerator, 2);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultipleClipDepths, 0);
    _properties.setIntProperty(kOfxImageEffectPropSupportsMultipleClipPARs, 0);
    _properties.setIntProperty(kOfxImageEffectPropSetableFrameRate, 0);
    _properties.setIntProperty(kOfxImageEffectPropSetableFielding, 0);
    _properties.setIntProperty(kOfxParamHostPropSupportsCustomInteract, 0);
    _properties.setIntProperty(kOfxParamHostPropSupportsStringAnimation, 0);
    _properties.setIntProperty(kOfxParamHostPropSupportsChoiceAnimation, 0);
    _properties.setIntProperty(kOfxParamHostPropSupportsBooleanAnimation, 0);
    _properties.setIntProperty(kOfxParamHostPropSupportsCustomAnimation, 0);
    _properties.setIntProperty(kOfxParamHostPropMaxParameters, -1);
    _properties.setIntProperty(kOfxParamHostPropMaxPages, 0);
    _properties.setIntProperty(kOfxParamHostPropPageRowColumnCount, 0, 0);
    _properties.setIntProperty(kOfxParamHostPropPageRowColumnCount, 0, 1);
    _properties.setIntProperty(kOfxImageEffectInstancePropSequentialRender, 2);
    _properties.setIntProperty(kOfxImageEffectPropRenderQualityDraft, 1);
  }

  IE::Instance *newInstance(void *clientData, IE::ImageEffectPlugin *plugin, IE::Descriptor &desc,
                            const std::string &context) override {
    bool interactive = clientData ? *static_cast<bool *>(clientData) : true;
    return new TestInstance(plugin, desc, context, interactive);
  }
  IE::Descriptor *makeDescriptor(IE::ImageEffectPlugin *plugin) override { return extend(new IE::Descriptor(plugin)); }
  IE::Descriptor *makeDescriptor(const IE::Descriptor &root, IE::ImageEffectPlugin *plugin) override {
    return extend(new IE::Descriptor(root, plugin));
  }
  IE::Descriptor *makeDescriptor(const std::string &bundle, IE::ImageEffectPlugin *plugin) override {
    return extend(new IE::Descriptor(bundle, plugin));
  }

  OfxStatus vmessage(const char *type, const char *id, const char *format, va_list args) override {
    Value m;
    m["type"] = type ? type : "";
    m["id"] = id ? id : "";
    m["text"] = vformat(format, args);
    m["handle"] = "host";
    gHostMessages.add(m);
    return kOfxStatOK;
  }
  OfxStatus setPersistentMessage(const char *type, const char *id, const char *format, va_list args) override {
    return vmessage(type, id, format, args);
  }
  OfxStatus clearPersistentMessage() override { return kOfxStatOK; }

  const void *fetchSuite(const char *name, int version) override {
    const void *s = nullptr;
    std::string n = name ? name : "";
    if (n == kOfxMessageSuite) s = (version == 1 || version == 2) ? &gMessageSuite : nullptr;
    else if (n == kOfxProgressSuite) s = version == 1 ? (const void *)&gProgressV1 : version == 2 ? (const void *)&gProgressV2 : nullptr;
    else if (n == kOfxTimeLineSuite) s = version == 1 ? &gTimeLineSuite : nullptr;
    else if (n == kOfxDrawSuite) s = version == 1 && gConfig.overlayDraw == Config::OverlayDraw::DrawSuite ? &gDrawSuite : nullptr;
    else s = IE::Host::fetchSuite(name, version);
    std::lock_guard<std::mutex> l(gSuiteMutex);
    auto &e = gSuiteRequests[std::make_pair(n, version)];
    e.first = s != nullptr;
    e.second++;
    return s;
  }

  // OfxMultiThreadSuiteV1
  OfxStatus multiThread(OfxThreadFunctionV1 func, unsigned int n, void *arg) override {
    if (!func) return kOfxStatFailed;
    if (n == 0) n = gConfig.cpus;
    RenderCtx *ctx = tRender;
    char action[sizeof tAction];
    memcpy(action, tAction, sizeof action);
    if (n == 1 || tSpawned) {  // nested or single: run on this thread
      unsigned savedIndex = tThreadIndex;
      for (unsigned i = 0; i < n; i++) {
        tThreadIndex = i;
        func(i, n, arg);
      }
      tThreadIndex = savedIndex;
      return kOfxStatOK;
    }
    std::vector<std::thread> threads;
    try {
      for (unsigned i = 0; i < n; i++) {
        threads.emplace_back([=, &action]() {
          tThreadIndex = i;
          tSpawned = true;
          tRender = ctx;
          memcpy(tAction, action, sizeof tAction);
          try {
            func(i, n, arg);
          } catch (...) {
          }
        });
      }
    } catch (...) {
      for (auto &t : threads) t.join();
      return kOfxStatErrMemory;
    }
    for (auto &t : threads) t.join();
    return kOfxStatOK;
  }
  OfxStatus multiThreadNumCPUS(unsigned int *n) const override {
    if (!n) return kOfxStatFailed;
    *n = gConfig.cpus;
    return kOfxStatOK;
  }
  OfxStatus multiThreadIndex(unsigned int *i) const override {
    if (!i) return kOfxStatFailed;
    *i = tThreadIndex;
    return kOfxStatOK;
  }
  int multiThreadIsSpawnedThread() const override { return tSpawned ? 1 : 0; }
  OfxStatus mutexCreate(OfxMutexHandle *mutex, int lockCount) override {
    if (!mutex) return kOfxStatFailed;
    HostMutex *m = new HostMutex;
    for (int i = 0; i < lockCount; i++) m->m.lock();
    *mutex = reinterpret_cast<OfxMutexHandle>(m);
    return kOfxStatOK;
  }
  OfxStatus mutexDestroy(const OfxMutexHandle mutex) override {
    if (!mutex) return kOfxStatErrBadHandle;
    delete reinterpret_cast<HostMutex *>(mutex);
    return kOfxStatOK;
  }
  OfxStatus mutexLock(const OfxMutexHandle mutex) override {
    if (!mutex) return kOfxStatErrBadHandle;
    reinterpret_cast<HostMutex *>(mutex)->m.lock();
    return kOfxStatOK;
  }
  OfxStatus mutexUnLock(const OfxMutexHandle mutex) override {
    if (!mutex) return kOfxStatErrBadHandle;
    reinterpret_cast<HostMutex *>(mutex)->m.unlock();
    return kOfxStatOK;
  }
  OfxStatus mutexTryLock(const OfxMutexHandle mutex) override {
    if (!mutex) return kOfxStatErrBadHandle;
    return reinterpret_cast<HostMutex *>(mutex)->m.try_lock() ? kOfxStatOK : kOfxStatFailed;
  }

 private:
  // HostSupport's descriptors accept only the properties it knows; add a few newer ones plug-ins set.
  static IE::Descriptor *extend(IE::Descriptor *d) {
    static const H::Property::PropSpec extra[] = {
        {kOfxImageEffectPluginPropOverlayInteractV2, H::Property::ePointer, 1, false, nullptr},
        {"OfxPropIcon", H::Property::eString, 2, false, ""},
        {"OfxImageEffectPropOpenGLRenderSupported", H::Property::eString, 1, false, "false"},
        H::Property::propSpecEnd};
    for (int i = 0; extra[i].name; i++)
      if (!d->getProps().fetchProperty(extra[i].name)) d->getProps().createProperty(extra[i]);
    return d;
  }
};

static TestHost *gHost = nullptr;

////////////////////////////////////////////////////////////////////////////////
// Plug-in cache: scanning, load report

// HostSupport keeps the search path and the set of known binaries protected; reach them through
// pointers to members formed in a derived class (well-defined, unlike a downcast).
struct CacheAccess : H::PluginCache {
  static std::list<std::string> &paths(H::PluginCache *c) { return c->*(&CacheAccess::_pluginPath); }
  static std::set<std::string> &known(H::PluginCache *c) { return c->*(&CacheAccess::_knownBinFiles); }
};

static std::unique_ptr<IE::PluginCache> gEffectCache;
static Value gLoadReport;

struct CerrCapture {
  std::ostringstream text;
  std::streambuf *old;
  CerrCapture() : old(std::cerr.rdbuf(text.rdbuf())) {}
  ~CerrCapture() {
    std::cerr.rdbuf(old);
    std::string s = text.str();
    if (!s.empty()) writeAll(2, s.data(), s.size());
  }
};

// The pre-scan mirrors HostSupport's directory walk and opens each binary itself, to report why a
// bundle does not load and to keep binaries HostSupport would assert on (unknown API) away from it.
static void examineBinary(const std::string &bundle, const std::string &bin, json::Array &out, std::set<std::string> &skip) {
  Value b;
  b["bundle"] = bundle;
  b["binary"] = bin;
  struct stat st;
  if (stat(bin.c_str(), &st) != 0) {
    b["ok"] = false;
    b["error"] = "no binary at " + bin + " (expected Contents/Linux-x86-64/<name>.ofx)";
    out.push_back(b);
    return;
  }
  ActionScope scope("dlopen / OfxGetNumberOfPlugins / OfxGetPlugin", bin.c_str());
  dlerror();
  void *h = dlopen(bin.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    b["ok"] = false;
    b["error"] = std::string("dlopen failed: ") + (e ? e : "unknown error");
    out.push_back(b);
    skip.insert(bin);
    return;
  }
  auto getNo = reinterpret_cast<int (*)()>(dlsym(h, "OfxGetNumberOfPlugins"));
  auto getPlug = reinterpret_cast<OfxPlugin *(*)(int)>(dlsym(h, "OfxGetPlugin"));
  if (!getNo || !getPlug) {
    b["ok"] = false;
    b["error"] = "the binary does not export OfxGetNumberOfPlugins and OfxGetPlugin";
    out.push_back(b);
    dlclose(h);
    return;
  }
  int n = getNo();
  json::Array plugs;
  bool ok = true;
  std::string error;
  for (int i = 0; i < n; i++) {
    OfxPlugin *p = getPlug(i);
    Value pj;
    if (!p) {
      ok = false;
      error = "OfxGetPlugin(" + std::to_string(i) + ") returned null";
      break;
    }
    pj["id"] = p->pluginIdentifier ? p->pluginIdentifier : "";
    pj["api"] = p->pluginApi ? p->pluginApi : "";
    pj["api_version"] = p->apiVersion;
    pj["version"] = Value(json::Array{p->pluginVersionMajor, p->pluginVersionMinor});
    plugs.push_back(pj);
    if (!p->pluginApi || strcmp(p->pluginApi, kOfxImageEffectPluginApi) != 0 || p->apiVersion != 1) {
      ok = false;
      error = std::string("plug-in ") + (p->pluginIdentifier ? p->pluginIdentifier : "?") + " has API " +
              (p->pluginApi ? p->pluginApi : "(null)") + " v" + std::to_string(p->apiVersion) +
              "; this host loads OfxImageEffectPluginAPI v1 only";
    }
  }
  b["count"] = n;
  b["plugins"] = Value(plugs);
  b["ok"] = ok;
  if (!ok) {
    b["error"] = error;
    skip.insert(bin);
  }
  out.push_back(b);
  dlclose(h);
}

static void scanDir(const std::string &dir, bool recurse, json::Array &out, std::set<std::string> &skip, int depth) {
  if (depth > 32) return;
  DIR *d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (dirent *de = readdir(d)) names.push_back(de->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto &name : names) {
    if (name.find(".ofx.bundle") != std::string::npos) {
      std::string bare = name.substr(0, name.size() - strlen(".bundle"));
      examineBinary(dir + "/" + name, dir + "/" + name + "/Contents/Linux-x86-64/" + bare, out, skip);
    } else if (recurse && name[0] != '@' && name != "." && name != "..") {
      scanDir(dir + "/" + name, recurse, out, skip, depth + 1);
    }
  }
}

static Value describeDescriptorBase(const IE::Base &d) {
  const H::Property::Set &p = d.getProps();
  Value v;
  v["label"] = d.getLabel();
  v["short_label"] = d.getShortLabel();
  v["long_label"] = d.getLongLabel();
  v["grouping"] = d.getPluginGrouping();
  try {
    v["description"] = p.getStringProperty(kOfxPropPluginDescription);
  } catch (...) {
  }
  json::Array contexts, depths, slaves;
  for (int i = 0; i < p.getDimension(kOfxImageEffectPropSupportedContexts); i++)
    contexts.push_back(p.getStringProperty(kOfxImageEffectPropSupportedContexts, i));
  for (int i = 0; i < p.getDimension(kOfxImageEffectPropSupportedPixelDepths); i++)
    depths.push_back(p.getStringProperty(kOfxImageEffectPropSupportedPixelDepths, i));
  for (int i = 0; i < p.getDimension(kOfxImageEffectPropClipPreferencesSlaveParam); i++)
    slaves.push_back(p.getStringProperty(kOfxImageEffectPropClipPreferencesSlaveParam, i));
  v["contexts"] = Value(contexts);
  v["pixel_depths"] = Value(depths);
  v["clip_preferences_slave_params"] = Value(slaves);
  v["render_thread_safety"] = d.getRenderThreadSafety();
  v["host_frame_threading"] = d.getHostFrameThreading();
  v["single_instance"] = d.isSingleInstance();
  v["supports_tiles"] = d.supportsTiles();
  v["supports_multi_resolution"] = d.supportsMultiResolution();
  v["temporal_clip_access"] = d.temporalAccess();
  v["supports_multiple_clip_depths"] = d.supportsMultipleClipDepths();
  v["supports_multiple_clip_pars"] = d.supportsMultipleClipPARs();
  v["field_render_twice_always"] = d.fieldRenderTwiceAlways();
  v["overlay"] = d.getOverlayInteractMainEntry() != nullptr;
  try {
    v["sequential_render"] = p.getIntProperty(kOfxImageEffectInstancePropSequentialRender);
  } catch (...) {
  }
  return v;
}

// "filter", "general", ... or the OFX context names.
static std::string contextArg(const std::string &c) {
  static const std::map<std::string, std::string> names = {
      {"filter", kOfxImageEffectContextFilter},       {"general", kOfxImageEffectContextGeneral},
      {"generator", kOfxImageEffectContextGenerator}, {"transition", kOfxImageEffectContextTransition},
      {"paint", kOfxImageEffectContextPaint},         {"retimer", kOfxImageEffectContextRetimer}};
  auto it = names.find(c);
  return it == names.end() ? c : it->second;
}

static IE::ImageEffectPlugin *findPlugin(const std::string &id) {
  if (!gEffectCache) throw HostError("no plug-ins loaded (send {\"cmd\":\"load\"} first)");
  IE::ImageEffectPlugin *p = gEffectCache->getPluginById(id);
  if (!p) p = gEffectCache->getPluginByLabel(id);
  if (!p) throw HostError("no plug-in '" + id + "' was loaded");
  return p;
}

// Loads and describes the plug-in (kOfxActionLoad, kOfxActionDescribe) if not done yet.
static void ensureLoaded(IE::ImageEffectPlugin *p) {
  ActionScope scope("kOfxActionLoad / kOfxActionDescribe", p->getIdentifier().c_str());
  CerrCapture capture;
  if (!p->getPluginHandle())
    throw HostError("plug-in " + p->getIdentifier() + " failed kOfxActionLoad or kOfxActionDescribe");
}

static Value cmdLoad(const Value &args) {
  if (gEffectCache) return gLoadReport;
  if (args.has("path")) setenv("OFX_PLUGIN_PATH", args.str("path").c_str(), 1);
  if (args.has("system_paths")) gConfig.systemPaths = args.boolean("system_paths", false);

  H::PluginCache *cache = H::PluginCache::getPluginCache();
  std::list<std::string> &paths = CacheAccess::paths(cache);
  if (!gConfig.systemPaths) {
    const char *env = getenv("OFX_PLUGIN_PATH");
    std::set<std::string> fromEnv;
    std::string s = env ? env : "";
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find_first_of(";:", start);
      if (end == std::string::npos) end = s.size();
      if (end > start) fromEnv.insert(s.substr(start, end - start));
      start = end + 1;
    }
    paths.remove_if([&](const std::string &p) { return !fromEnv.count(p); });
  }

  json::Array binaries;
  std::set<std::string> skip;
  for (const auto &dir : paths) scanDir(dir, true, binaries, skip, 0);
  for (const auto &bin : skip) CacheAccess::known(cache).insert(bin);

  gEffectCache.reset(new IE::PluginCache(*gHost));
  gEffectCache->registerInCache(*cache);
  std::string log;
  {
    ActionScope scope("plug-in scan (kOfxActionLoad / kOfxActionDescribe / kOfxActionUnload)", "");
    CerrCapture capture;
    cache->scanPluginFiles();
    log = capture.text.str();
  }

  json::Array plugins;
  for (IE::ImageEffectPlugin *p : gEffectCache->getPlugins()) {
    Value pj;
    pj["id"] = p->getIdentifier();
    pj["version"] = Value(json::Array{p->getVersionMajor(), p->getVersionMinor()});
    pj["bundle"] = p->getBinary()->getBundlePath();
    pj["binary"] = p->getBinary()->getFilePath();
    std::string error;
    {
      ActionScope scope("kOfxActionLoad / kOfxActionDescribe", p->getIdentifier().c_str());
      CerrCapture capture;
      if (!p->getPluginHandle()) error = "kOfxActionLoad or kOfxActionDescribe failed";
      log += capture.text.str();
    }
    for (const char *what : {"load failed on plugin ", "describe failed on plugin "}) {
      if (log.find(std::string(what) + p->getIdentifier()) != std::string::npos)
        error = std::string(what).find("load") == 0 ? "kOfxActionLoad failed" : "kOfxActionDescribe failed";
    }
    pj["ok"] = error.empty();
    if (!error.empty()) pj["error"] = error;
    Value d = describeDescriptorBase(p->getDescriptor());
    json::Array contexts;
    for (const auto &c : p->getContexts()) contexts.push_back(c);
    pj["label"] = d.get("label");
    pj["contexts"] = Value(contexts);
    pj["pixel_depths"] = d.get("pixel_depths");
    pj["overlay"] = d.get("overlay");
    plugins.push_back(pj);
  }
  json::Array searched;
  for (const auto &p : paths) searched.push_back(p);

  Value r;
  r["plugins"] = Value(plugins);
  r["binaries"] = Value(binaries);
  r["search_path"] = Value(searched);
  r["log"] = log;
  gLoadReport = r;
  return r;
}

////////////////////////////////////////////////////////////////////////////////
// Instances

static std::map<std::string, std::unique_ptr<TestInstance>> gInstances;
static std::string gCurrent;

static TestInstance *instanceArg(const Value &args) {
  std::string name = args.str("instance", gCurrent);
  auto it = gInstances.find(name);
  if (it == gInstances.end())
    throw HostError(name.empty() ? std::string("no instance (send create_instance first)") : "no instance '" + name + "'");
  return it->second.get();
}

static Value propsJson(const H::Property::Set &set) {
  Value out = Value::object();
  for (const auto &kv : set.getProperties()) {
    H::Property::Property *p = kv.second;
    int n = 0;
    try {
      n = p->getDimension();
    } catch (...) {
      continue;
    }
    json::Array vals;
    for (int i = 0; i < n; i++) {
      try {
        switch (p->getType()) {
          case H::Property::eInt: vals.push_back(set.getIntPropertyRaw(kv.first, i)); break;
          case H::Property::eDouble: vals.push_back(set.getDoublePropertyRaw(kv.first, i)); break;
          case H::Property::eString: vals.push_back(set.getStringPropertyRaw(kv.first, i)); break;
          case H::Property::ePointer: vals.push_back(set.getPointerPropertyRaw(kv.first, i) != nullptr); break;
          default: break;
        }
      } catch (...) {
      }
    }
    out[kv.first] = (p->isFixedSize() && p->getFixedDimension() == 1 && vals.size() == 1) ? vals[0] : Value(vals);
  }
  return out;
}

static Value paramSummary(H::Param::Base &p) {
  const H::Property::Set &pr = p.getProperties();
  Value v;
  v["name"] = p.getName();
  v["type"] = p.getType();
  v["label"] = p.getLabel();
  try {
    v["hint"] = p.getHint();
  } catch (...) {
  }
  try {
    v["parent"] = p.getParentName();
  } catch (...) {
  }
  try {
    v["secret"] = p.getSecret();
    v["enabled"] = p.getEnabled();
  } catch (...) {
  }
  try {
    v["animates"] = p.getCanAnimate();
    v["persistent"] = p.getIsPersistant();
    v["evaluate_on_change"] = p.getEvaluateOnChange();
  } catch (...) {
  }
  if (p.getType() == kOfxParamTypeChoice) {
    json::Array o;
    for (int i = 0; i < pr.getDimension(kOfxParamPropChoiceOption); i++) o.push_back(pr.getStringProperty(kOfxParamPropChoiceOption, i));
    v["options"] = Value(o);
  }
  v["props"] = propsJson(pr);
  return v;
}

static Value clipsJson(TestInstance *inst) {
  Value clips = Value::object();
  for (IE::ClipDescriptor *cd : inst->getDescriptor().getClipsByOrder()) {
    IE::ClipInstance *c = inst->getClip(cd->getName());
    if (!c) continue;
    Value cj;
    cj["connected"] = c->getConnected();
    cj["optional"] = c->isOptional();
    cj["unmapped_depth"] = pixels::depthName(pixels::depthFromOfx(c->getUnmappedBitDepth()));
    cj["unmapped_components"] = c->getUnmappedComponents();
    cj["depth"] = pixels::depthName(pixels::depthFromOfx(c->getPixelDepth()));
    cj["components"] = c->getComponents();
    cj["pixel_aspect"] = c->getAspectRatio();
    double a = 0, b = 0;
    c->getFrameRange(a, b);
    // null when the clip carries no frame range property (configure clip_frame_range false)
    cj["frame_range"] = c->getProps().fetchProperty(kOfxImageEffectPropFrameRange) ? Value(json::Array{a, b}) : Value();
    cj["premult"] = c->getPremult();
    cj["field_order"] = c->getFieldOrder();
    clips[cd->getName()] = cj;
  }
  return clips;
}

static Value prefsJson(TestInstance *inst) {
  Value v;
  v["clips"] = clipsJson(inst);
  v["output_premult"] = inst->getOutputPreMultiplication();
  v["output_fielding"] = inst->getOutputFielding();
  v["output_frame_rate"] = inst->getOutputFrameRate();
  v["frame_varying"] = inst->isFrameVarying();
  v["continuous_samples"] = inst->continuousSamples();
  return v;
}

static bool runClipPrefs(TestInstance *inst, bool force) {
  ActionScope scope(kOfxImageEffectActionGetClipPreferences, inst->pluginId().c_str());
  try {
    if (force) return inst->getClipPreferences();
    inst->runGetClipPrefsConditionally();
    return true;
  } catch (H::Property::Exception &e) {
    throw HostError(std::string("clip preferences failed: ") + statName(e.getStatus()));
  }
}

// A param this host does not show (configure secret_params "hidden": kOfxParamPropSecret is 1).
static bool hiddenParam(H::Param::Instance *p) {
  if (!gConfig.hideSecretParams) return false;
  try {
    return p->getSecret();
  } catch (...) {
    return false;
  }
}

static ValueAccess *valueParam(TestInstance *inst, const std::string &name, H::Param::Instance **raw = nullptr) {
  H::Param::Instance *p = inst->getParam(name);
  if (!p) throw HostError("no param '" + name + "'");
  if (hiddenParam(p)) throw HostError("param '" + name + "' is secret: this host hides secret params");
  if (raw) *raw = p;
  return dynamic_cast<ValueAccess *>(p);
}

// Sets project values; returns the names a host hiding secret params ignored (as MLT ignores
// properties it does not expose, without a word).
static json::Array applyValues(TestInstance *inst, const Value &values) {
  json::Array ignored;
  if (values.isNull()) return ignored;
  for (const auto &kv : values.asObject()) {
    H::Param::Instance *p = inst->getParam(kv.first);
    if (p && hiddenParam(p)) {
      ignored.push_back(kv.first);
      continue;
    }
    ValueAccess *va = valueParam(inst, kv.first);
    if (!va) throw HostError("param '" + kv.first + "' has no value");
    try {
      va->fromJson(kv.second);
    } catch (std::exception &e) {
      throw HostError("param '" + kv.first + "': " + e.what());
    }
  }
  return ignored;
}

static Value createInstance(const std::string &pluginId, const std::string &context, const std::string &name,
                            const Value &values, bool interactive) {
  IE::ImageEffectPlugin *p = findPlugin(pluginId);
  ensureLoaded(p);
  if (gInstances.count(name)) throw HostError("instance '" + name + "' exists (destroy_instance first)");
  if (!p->getContexts().count(context)) throw HostError("plug-in " + p->getIdentifier() + " does not support the " + context + " context");
  {
    ActionScope scope(kOfxImageEffectActionDescribeInContext, p->getIdentifier().c_str());
    CerrCapture capture;
    if (!p->getContext(context)) throw HostError("kOfxImageEffectActionDescribeInContext(" + context + ") failed");
  }
  IE::Instance *raw = nullptr;
  {
    ActionScope scope("instance construction", p->getIdentifier().c_str());
    raw = p->createInstance(context, &interactive);
  }
  if (!raw) throw HostError("HostSupport could not make an instance");
  std::unique_ptr<TestInstance> inst(static_cast<TestInstance *>(raw));
  if (inst->getParams().size() != inst->getDescriptor().getParamList().size())
    throw HostError("could not make every parameter instance");
  json::Array ignored = applyValues(inst.get(), values);  // project values go in before kOfxActionCreateInstance
  OfxStatus st;
  try {
    st = inst->createInstanceAction();
  } catch (H::Property::Exception &e) {
    st = e.getStatus();
  }
  Value r;
  r["status"] = statName(st);
  if (!okOrDefault(st)) {
    r["created"] = false;
    r["messages"] = inst->messages.take(false);
    return r;  // the instance is dropped; kOfxActionDestroyInstance is not called (it was not created)
  }
  r["created"] = true;
  if (!ignored.empty()) r["ignored_params"] = Value(ignored);
  r["clip_preferences_ok"] = runClipPrefs(inst.get(), true);
  r["instance"] = name;
  r["plugin"] = p->getIdentifier();
  r["context"] = context;
  Value prefs = prefsJson(inst.get());
  for (const auto &kv : prefs.asObject()) r[kv.first] = kv.second;
  json::Array params;
  for (H::Param::Instance *pi : inst->getParamList())
    if (!hiddenParam(pi)) params.push_back(pi->getName());
  r["params"] = Value(params);
  gCurrent = name;
  gInstances[name] = std::move(inst);
  return r;
}

////////////////////////////////////////////////////////////////////////////////
// Rendering

struct Job {
  std::thread thread;
  Value result;
  std::atomic<bool> done{false};
  TestInstance *inst = nullptr;
};
static std::map<int, std::unique_ptr<Job>> gJobs;
static int gNextJob = 1;

static void joinJobs(TestInstance *inst) {
  for (auto it = gJobs.begin(); it != gJobs.end();) {
    if (!inst || it->second->inst == inst) {
      if (it->second->thread.joinable()) it->second->thread.join();
      if (inst) {
        it = gJobs.erase(it);
        continue;
      }
    }
    ++it;
  }
}

static OfxPointD scaleArg(const Value &args) {
  const Value &s = args.get("render_scale");
  if (s.isNull()) return OfxPointD{1, 1};
  if (s.isNumber()) return OfxPointD{s.asNumber(), s.asNumber()};
  std::vector<double> v = numbers(s, 2, "render_scale");
  return OfxPointD{v[0], v[1]};
}

static std::string fieldArg(const Value &args) {
  std::string f = args.str("field", "none");
  if (f == "none") return kOfxImageFieldNone;
  if (f == "both") return kOfxImageFieldBoth;
  if (f == "lower") return kOfxImageFieldLower;
  if (f == "upper") return kOfxImageFieldUpper;
  return f;
}

static std::string outPath(const Value &args, size_t i, double time) {
  const Value &outs = args.get("outs");
  if (outs.isArray() && i < outs.size()) return outs.asArray()[i].asString();
  std::string p = args.str("out");
  for (auto key : {std::string("{i}"), std::string("{t}")}) {
    size_t pos;
    while ((pos = p.find(key)) != std::string::npos) {
      std::ostringstream s;
      if (key == "{i}") s << i;
      else s << time;
      p.replace(pos, key.size(), s.str());
    }
  }
  return p;
}

static Value renderOne(TestInstance *inst, double time, const Value &args, size_t index, const std::string &threadSafety) {
  Value r;
  r["time"] = time;
  double t0 = nowMs();
  OfxPointD scale = scaleArg(args);
  std::string field = fieldArg(args);
  bool sequential = args.boolean("sequential", false), interactive = args.boolean("interactive", false),
       draft = args.boolean("draft", false);

  OfxRectD rod{0, 0, 0, 0};
  OfxStatus st;
  try {
    st = inst->getRegionOfDefinitionAction(time, scale, rod);
  } catch (H::Property::Exception &e) {
    st = e.getStatus();
  }
  r["rod_status"] = statName(st);
  if (!okOrDefault(st)) {
    r["status"] = statName(st);
    r["error"] = "kOfxImageEffectActionGetRegionOfDefinition failed";
    return r;
  }
  double par = inst->getProjectPixelAspectRatio();
  if (par <= 0) par = 1;
  OfxRectI rodPx{int(std::floor(rod.x1 * scale.x / par)), int(std::floor(rod.y1 * scale.y)),
                 int(std::ceil(rod.x2 * scale.x / par)), int(std::ceil(rod.y2 * scale.y))};
  OfxRectI window = rodPx;
  if (args.has("window")) {
    std::vector<double> w = numbers(args.get("window"), 4, "window");
    window = OfxRectI{int(w[0]), int(w[1]), int(w[2]), int(w[3])};
  }
  r["rod"] = rectJson(rod);
  r["rod_pixels"] = rectJson(rodPx);
  r["window"] = rectJson(window);
  if (window.x2 <= window.x1 || window.y2 <= window.y1) {
    r["status"] = "kOfxStatOK";
    r["error"] = "empty render window: nothing rendered";
    return r;
  }

  IE::ClipInstance *outClip = inst->getClip(kOfxImageEffectOutputClipName);
  if (!outClip) throw HostError("the plug-in has no Output clip");
  pixels::Depth depth = pixels::depthFromOfx(outClip->getPixelDepth());
  int comps = pixels::componentsFromOfx(outClip->getComponents());
  if (depth == pixels::DepthNone || !comps)
    throw HostError("the Output clip has no pixel depth/components: " + outClip->getPixelDepth() + " " + outClip->getComponents());

  auto out = std::make_shared<pixels::Buffer>();
  out->depth = depth;
  out->components = comps;
  OfxRectI b = window;
  if (args.str("output_bounds", "window") == "rod") {
    b = OfxRectI{std::min(rodPx.x1, window.x1), std::min(rodPx.y1, window.y1), std::max(rodPx.x2, window.x2),
                 std::max(rodPx.y2, window.y2)};
  }
  out->x1 = b.x1;
  out->y1 = b.y1;
  out->width = b.x2 - b.x1;
  out->height = b.y2 - b.y1;
  out->allocate();
  if (args.has("fill")) {
    float f = float(args.num("fill", 0)), rgba[4] = {f, f, f, f};
    for (int y = b.y1; y < b.y2; y++)
      for (int x = b.x1; x < b.x2; x++) pixels::writeRGBA(out->pixel(x, y), depth, comps, rgba);
  }

  RenderCtx ctx;
  ctx.inst = inst;
  ctx.time = time;
  ctx.scale = scale;
  ctx.out = out;
  ctx.rodPx = rodPx;
  ctx.field = field;
  inst->lastRenderTime = time;
  RenderCtx *saved = tRender;
  tRender = &ctx;
  inst->addActive(&ctx);
  struct Restore {
    TestInstance *inst;
    RenderCtx *ctx, *saved;
    ~Restore() {
      inst->removeActive(ctx);
      tRender = saved;
    }
  } restore{inst, &ctx, saved};

  bool rendered = false;
  if (args.boolean("identity_check", true)) {
    std::string idClip;
    double idTime = time;
    OfxStatus ist;
    try {
      ist = inst->isIdentityAction(idTime, field, window, scale, idClip);
    } catch (H::Property::Exception &e) {
      ist = e.getStatus();
    }
    r["identity_status"] = statName(ist);
    if (ist == kOfxStatOK && !idClip.empty()) {
      Value id;
      id["clip"] = idClip;
      id["time"] = idTime;
      r["identity"] = id;
      IE::ClipInstance *c = inst->getClip(idClip);
      IE::Image *img = c ? c->getImage(idTime, nullptr) : nullptr;
      if (!img) {
        r["status"] = "kOfxStatFailed";
        r["error"] = "identity clip '" + idClip + "' has no image at that time";
        return r;
      }
      const pixels::Buffer &src = static_cast<TestImage *>(img)->buffer();
      for (int y = window.y1; y < window.y2; y++)
        for (int x = window.x1; x < window.x2; x++) {
          float rgba[4] = {0, 0, 0, 0};
          if (x >= src.x1 && x < src.x1 + src.width && y >= src.y1 && y < src.y1 + src.height)
            pixels::readRGBA(src.pixel(x, y), src.depth, src.components, rgba);
          pixels::writeRGBA(out->pixel(x, y), depth, comps, rgba);
        }
      img->releaseReference();
      st = kOfxStatOK;
      rendered = true;
    }
  }

  if (!rendered) {
    OfxRectD roi{window.x1 * par / scale.x, window.y1 / scale.y, window.x2 * par / scale.x, window.y2 / scale.y};
    std::map<IE::ClipInstance *, OfxRectD> rois;
    try {
      st = inst->getRegionOfInterestAction(time, scale, roi, rois);
    } catch (H::Property::Exception &e) {
      st = e.getStatus();
    }
    r["roi_status"] = statName(st);
    Value roisJ = Value::object();
    for (auto &kv : rois) roisJ[kv.first->getName()] = rectJson(kv.second);
    r["rois"] = roisJ;
    IE::RangeMap ranges;
    try {
      st = inst->getFrameNeededAction(time, ranges);
    } catch (H::Property::Exception &e) {
      st = e.getStatus();
    }
    r["frames_needed_status"] = statName(st);
    Value fn = Value::object();
    for (auto &kv : ranges) {
      json::Array a;
      for (auto &rg : kv.second) a.push_back(Value(json::Array{rg.min, rg.max}));
      fn[kv.first->getName()] = Value(a);
    }
    r["frames_needed"] = fn;

    std::unique_lock<std::mutex> lockAll, lockInst;
    static std::mutex unsafeMutex;
    if (gConfig.respectThreadSafety && args.boolean("respect_thread_safety", true)) {
      if (threadSafety == kOfxImageEffectRenderUnsafe) lockAll = std::unique_lock<std::mutex>(unsafeMutex);
      else if (threadSafety != kOfxImageEffectRenderFullySafe) lockInst = std::unique_lock<std::mutex>(inst->renderMutex);
    }
    int inflight = ++inst->rendersInFlight;
    int prev = inst->maxRendersInFlight.load();
    while (inflight > prev && !inst->maxRendersInFlight.compare_exchange_weak(prev, inflight)) {
    }
    try {
      st = inst->renderAction(time, field, window, scale, sequential, interactive, draft);
    } catch (H::Property::Exception &e) {
      st = e.getStatus();
    }
    --inst->rendersInFlight;
  }

  r["status"] = statName(st);
  r["bounds"] = rectJson(b);
  r["depth"] = pixels::depthName(depth);
  r["components"] = pixels::componentsName(comps);
  r["render_scale"] = Value(json::Array{scale.x, scale.y});
  r["ms"] = nowMs() - t0;
  std::string path = outPath(args, index, time);
  if (st == kOfxStatOK && !path.empty()) {
    pixels::writeFile(path, *out);
    r["out"] = path;
  }
  return r;
}

// MLT's frame-threaded mode (filter_openfx.c, filter_get_image, for every plug-in that is not
// render-unsafe): each frame gets a fresh instance of the plug-in, on whichever render thread takes
// the frame. kOfxActionCreateInstance with the defaults, then the project's values set without
// instanceChanged (MLT's update_plugin_params), clip preferences, begin sequence render over
// [t, t], render, end sequence render, kOfxActionDestroyInstance. The project instance (`base`, made
// by create_instance, like MLT's filter-wide instance) is never rendered; what the fresh instances
// logged (messages, fetches, events, progress) lands in its logs, each entry with `frame_instance`.
static std::mutex gConstructMutex;  // HostSupport's instance construction is not thread-safe
static std::atomic<int> gFreshLive{0}, gFreshMaxLive{0};

static Value renderFreshInstance(TestInstance *base, double time, const Value &args, size_t index) {
  std::string tag = "frame@" + std::to_string(std::lround(time)) + "#" + std::to_string(index);
  Value r;
  bool interactive = false;
  IE::Instance *raw = nullptr;
  {
    std::lock_guard<std::mutex> l(gConstructMutex);
    ActionScope scope("instance construction", base->pluginId().c_str());
    raw = base->getPlugin()->createInstance(base->getContext(), &interactive);
  }
  if (!raw) throw HostError("HostSupport could not make an instance");
  std::unique_ptr<TestInstance> inst(static_cast<TestInstance *>(raw));
  int live = ++gFreshLive;
  int prev = gFreshMaxLive.load();
  while (live > prev && !gFreshMaxLive.compare_exchange_weak(prev, live)) {
  }
  struct Live {
    ~Live() { --gFreshLive; }
  } liveGuard;
  auto harvest = [&]() {
    auto move = [&](Log &from, Log &to) {
      Value all = from.take(true);
      for (const auto &e : all.asArray()) {
        Value x = e;
        x["frame_instance"] = tag;
        to.add(x);
      }
    };
    move(inst->messages, base->messages);
    move(inst->fetches, base->fetches);
    move(inst->events, base->events);
    move(inst->progress, base->progress);
  };
  OfxStatus st;
  {
    ActionScope scope(kOfxActionCreateInstance, base->pluginId().c_str());
    try {
      st = inst->createInstanceAction();
    } catch (H::Property::Exception &e) {
      st = e.getStatus();
    }
  }
  if (!okOrDefault(st)) {
    r["time"] = time;
    r["status"] = statName(st);
    r["error"] = "kOfxActionCreateInstance failed";
    harvest();
    return r;  // not created: the destructor sends no kOfxActionDestroyInstance
  }
  for (H::Param::Instance *p : base->getParamList()) {
    if (hiddenParam(p)) continue;  // never exposed, so never set: the fresh instance keeps the default
    ValueAccess *from = dynamic_cast<ValueAccess *>(p);
    H::Param::Instance *q = inst->getParam(p->getName());
    ValueAccess *to = q ? dynamic_cast<ValueAccess *>(q) : nullptr;
    if (from && to) to->fromJson(from->toJson());
  }
  runClipPrefs(inst.get(), true);
  OfxPointD scale = scaleArg(args);
  OfxStatus bst, est;
  try {
    bst = inst->beginRenderAction(time, time, 1, false, scale, true, false);
  } catch (H::Property::Exception &e) {
    bst = e.getStatus();
  }
  Value one = args;
  one["identity_check"] = false;  // MLT asks no IsIdentity
  r = renderOne(inst.get(), time, one, index, inst->getRenderThreadSafety());
  try {
    est = inst->endRenderAction(time, time, 1, false, scale, true, false);
  } catch (H::Property::Exception &e) {
    est = e.getStatus();
  }
  r["begin_status"] = statName(bst);
  r["end_status"] = statName(est);
  r["frame_instance"] = tag;
  r["persistent"] = inst->persistentMessage();
  {
    ActionScope scope(kOfxActionDestroyInstance, base->pluginId().c_str());
    inst->destroyNow();
  }
  harvest();
  return r;
}

static Value doRenderFrameThreaded(TestInstance *base, const Value &args) {
  std::vector<double> times;
  int threads = std::max(1, args.integer("threads", 1));
  if (args.get("times").isArray()) {
    for (const auto &t : args.get("times").asArray()) times.push_back(t.asNumber());
  } else {
    times.assign(size_t(threads), args.num("time", gTime.load()));
  }
  if (times.empty()) throw HostError("no times to render");
  gFreshMaxLive = 0;
  std::vector<Value> results(times.size());
  std::vector<Value> persistent(times.size());
  std::atomic<size_t> next{0};
  std::mutex errMutex;
  std::string err;
  auto work = [&]() {
    for (size_t i; (i = next++) < times.size();) {
      try {
        results[i] = renderFreshInstance(base, times[i], args, i);
      } catch (std::exception &e) {
        std::lock_guard<std::mutex> l(errMutex);
        err = e.what();
      } catch (H::Property::Exception &e) {
        std::lock_guard<std::mutex> l(errMutex);
        err = std::string("property exception: ") + statName(e.getStatus());
      }
    }
  };
  if (threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; k++) pool.emplace_back(work);
    for (auto &t : pool) t.join();
  }
  if (!err.empty()) throw HostError(err);
  // The project instance shows the message the last frame (in time order of the request) left.
  base->setPersistentValue(results.back().get("persistent"));
  Value r;
  r["frame_threaded"] = true;
  r["max_live_instances"] = gFreshMaxLive.load();
  if (results.size() == 1) {
    for (const auto &kv : results[0].asObject()) r[kv.first] = kv.second;
  } else {
    json::Array a(results.begin(), results.end());
    r["renders"] = Value(a);
    std::string worst = "kOfxStatOK";
    for (const auto &x : results)
      if (x.str("status") != "kOfxStatOK") worst = x.str("status");
    r["status"] = worst;
  }
  return r;
}

static Value doRender(TestInstance *inst, const Value &args) {
  // MLT frame-threads every plug-in but the render-unsafe ones, which it renders serialized on its
  // one filter-wide instance.
  if (gConfig.frameThreaded && inst->getRenderThreadSafety() != kOfxImageEffectRenderUnsafe)
    return doRenderFrameThreaded(inst, args);
  runClipPrefs(inst, false);
  std::vector<double> times;
  int threads = std::max(1, args.integer("threads", 1));
  if (args.get("times").isArray()) {
    for (const auto &t : args.get("times").asArray()) times.push_back(t.asNumber());
  } else {
    double t = args.num("time", gTime.load());
    times.assign(size_t(threads), t);
  }
  if (times.empty()) throw HostError("no times to render");

  inst->abortFlag = false;
  inst->abortPolls = 0;
  inst->abortAfterPolls = args.has("abort_after_polls") ? long(args.num("abort_after_polls", 0)) : -1;
  inst->abortAtProgress = args.num("abort_at_progress", 1e300);
  inst->abortDeadlineMs = args.has("abort_after_ms") ? nowMs() + args.num("abort_after_ms", 0) : -1;
  inst->maxRendersInFlight = 0;

  OfxPointD scale = scaleArg(args);
  bool sequential = args.boolean("sequential", false), interactive = args.boolean("interactive", false);
  double tmin = *std::min_element(times.begin(), times.end()), tmax = *std::max_element(times.begin(), times.end());
  std::string threadSafety = inst->getRenderThreadSafety();

  Value r;
  OfxStatus bst;
  try {
    bst = inst->beginRenderAction(tmin, tmax, 1, interactive, scale, sequential, interactive);
  } catch (H::Property::Exception &e) {
    bst = e.getStatus();
  }
  r["begin_status"] = statName(bst);

  std::vector<Value> results(times.size());
  if (threads == 1) {
    for (size_t i = 0; i < times.size(); i++) results[i] = renderOne(inst, times[i], args, i, threadSafety);
  } else {
    std::atomic<size_t> next{0};
    std::mutex errMutex;
    std::string err;
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; k++) {
      pool.emplace_back([&]() {
        for (size_t i; (i = next++) < times.size();) {
          try {
            results[i] = renderOne(inst, times[i], args, i, threadSafety);
          } catch (std::exception &e) {
            std::lock_guard<std::mutex> l(errMutex);
            err = e.what();
          }
        }
      });
    }
    for (auto &t : pool) t.join();
    if (!err.empty()) throw HostError(err);
  }

  OfxStatus est;
  try {
    est = inst->endRenderAction(tmin, tmax, 1, interactive, scale, sequential, interactive);
  } catch (H::Property::Exception &e) {
    est = e.getStatus();
  }
  r["end_status"] = statName(est);
  r["aborted"] = inst->abortFlag.load();
  r["abort_polls"] = double(inst->abortPolls.load());
  // A cancel belongs to its render: clear it for whatever comes next.
  inst->abortFlag = false;
  inst->abortAfterPolls = -1;
  inst->abortAtProgress = 1e300;
  inst->abortDeadlineMs = -1;
  r["thread_safety"] = threadSafety;
  r["max_concurrent_renders"] = inst->maxRendersInFlight.load();
  if (results.size() == 1) {
    for (const auto &kv : results[0].asObject()) r[kv.first] = kv.second;
  } else {
    json::Array a(results.begin(), results.end());
    r["renders"] = Value(a);
    std::string worst = "kOfxStatOK";
    for (const auto &x : results)
      if (x.str("status") != "kOfxStatOK") worst = x.str("status");
    r["status"] = worst;
  }
  return r;
}

////////////////////////////////////////////////////////////////////////////////
// Interacts

// Interact entry points are called by HostSupport without a try block: a C++ exception thrown by
// the plug-in would unwind into the host. Catch it, log it like HostSupport does for effect actions.
template <class F>
static OfxStatus guarded(TestInstance *inst, const std::string &what, F f) {
  std::string error;
  try {
    return f();
  } catch (std::exception &e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  Value m;
  m["type"] = kOfxMessageError;
  m["id"] = "";
  m["text"] = what + ": exception thrown by the plug-in (" + error + ")";
  m["persistent"] = false;
  inst->messages.add(m);
  return kOfxStatFailed;
}

static TestOverlay *ensureOverlay(TestInstance *inst) {
  if (inst->overlay) {
    if (inst->overlay->state() != H::Interact::eCreated) throw HostError("the overlay interact failed to describe or create");
    return inst->overlay.get();
  }
  // OpenFX 1.5: the V1 entry draws with OpenGL, the V2 entry with the Draw Suite. A host with the
  // Draw Suite takes V2 when there is one (else V1, still handing it a draw context); an OpenGL host
  // knows only V1. HostSupport knows only V1 (and takes the overlay from the context's descriptor,
  // which the instance's properties chain to): point it at the entry chosen.
  H::Property::Set &props = inst->getDescriptor().getProps();
  void *v2 = props.fetchProperty(kOfxImageEffectPluginPropOverlayInteractV2)
                 ? props.getPointerProperty(kOfxImageEffectPluginPropOverlayInteractV2)
                 : nullptr;
  if (gConfig.overlayDraw == Config::OverlayDraw::DrawSuite && v2) {
    props.setPointerProperty(kOfxImageEffectPluginPropOverlayInteractV1, v2);
    inst->overlayEntry = "V2";
  } else {
    inst->overlayEntry = "V1";
  }
  if (!inst->getOverlayInteractMainEntry())
    throw HostError(v2 ? "the plug-in's overlay (kOfxImageEffectPluginPropOverlayInteractV2) needs the Draw Suite; it has no OpenGL one (V1)"
                       : "the plug-in has no overlay interact (kOfxImageEffectPluginPropOverlayInteractV1)");
  std::unique_ptr<TestOverlay> ov;
  {
    ActionScope scope("overlay kOfxActionDescribe", inst->pluginId().c_str());
    OfxStatus st = guarded(inst, "overlay kOfxActionDescribe", [&]() {
      ov.reset(new TestOverlay(*inst));
      return kOfxStatOK;
    });
    if (st != kOfxStatOK) throw HostError("the overlay interact's kOfxActionDescribe threw an exception");
  }
  if (ov->state() != H::Interact::eDescribed) {
    inst->overlay = std::move(ov);
    throw HostError("the overlay interact's kOfxActionDescribe failed");
  }
  OfxStatus st;
  {
    ActionScope scope("overlay kOfxActionCreateInstance", inst->pluginId().c_str());
    TestOverlay *o = ov.get();
    st = guarded(inst, "overlay kOfxActionCreateInstance", [&]() { return o->createInstanceAction(); });
  }
  inst->overlay = std::move(ov);
  if (!okOrDefault(st)) throw HostError(std::string("the overlay interact's kOfxActionCreateInstance failed: ") + statName(st));
  return inst->overlay.get();
}

// An OpenGL host's viewer, headless: one offscreen Mesa context (EGL on the surfaceless platform,
// llvmpipe when there is no GPU) with a pbuffer the size of the viewport, made current on the
// protocol thread for the draw action, as a host makes its viewer's context current. The projection
// maps canonical coordinates to the viewport: x from the project offset over viewport width x
// pixel scale x, likewise y; modelview identity; blending on (SRC_ALPHA, ONE_MINUS_SRC_ALPHA), as
// viewers draw overlays over the image. The host reads the pixels back with glReadPixels.
struct GLViewer {
  EGLDisplay display = EGL_NO_DISPLAY;
  EGLConfig config = nullptr;
  EGLContext context = EGL_NO_CONTEXT;
  EGLSurface surface = EGL_NO_SURFACE;
  int width = 0, height = 0;
  std::string renderer, version;

  void open(int w, int h) {
    if (display == EGL_NO_DISPLAY) {
      auto getPlatformDisplay = reinterpret_cast<PFNEGLGETPLATFORMDISPLAYEXTPROC>(eglGetProcAddress("eglGetPlatformDisplayEXT"));
      if (!getPlatformDisplay) throw HostError("OpenGL overlay: EGL has no eglGetPlatformDisplayEXT (install libegl-mesa0)");
      EGLDisplay d = getPlatformDisplay(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, nullptr);
      EGLint major = 0, minor = 0;
      if (d == EGL_NO_DISPLAY || !eglInitialize(d, &major, &minor))
        throw HostError("OpenGL overlay: no EGL surfaceless display (install libegl-mesa0 libgl1-mesa-dri)");
      if (!eglBindAPI(EGL_OPENGL_API)) throw HostError("OpenGL overlay: EGL cannot bind desktop OpenGL");
      const EGLint attrs[] = {EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_RED_SIZE, 8,
                              EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8, EGL_ALPHA_SIZE, 8, EGL_NONE};
      EGLint n = 0;
      if (!eglChooseConfig(d, attrs, &config, 1, &n) || n < 1) throw HostError("OpenGL overlay: no RGBA8 pbuffer EGL config");
      // Legacy (compatibility profile) OpenGL: what overlay code in OpenFX plug-ins is written for.
      const EGLint ctxAttrs[] = {EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL_CONTEXT_OPENGL_COMPATIBILITY_PROFILE_BIT, EGL_NONE};
      context = eglCreateContext(d, config, EGL_NO_CONTEXT, ctxAttrs);
      if (context == EGL_NO_CONTEXT) throw HostError("OpenGL overlay: EGL could not create a compatibility-profile context");
      display = d;
    }
    if (surface == EGL_NO_SURFACE || w != width || h != height) {
      if (surface != EGL_NO_SURFACE) {
        eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        eglDestroySurface(display, surface);
        surface = EGL_NO_SURFACE;
      }
      const EGLint pb[] = {EGL_WIDTH, w, EGL_HEIGHT, h, EGL_NONE};
      surface = eglCreatePbufferSurface(display, config, pb);
      if (surface == EGL_NO_SURFACE) throw HostError("OpenGL overlay: EGL could not create a pbuffer");
      width = w;
      height = h;
    }
    if (!eglMakeCurrent(display, surface, surface, context)) throw HostError("OpenGL overlay: eglMakeCurrent failed");
    const GLubyte *r = glGetString(GL_RENDERER), *v = glGetString(GL_VERSION);
    renderer = r ? reinterpret_cast<const char *>(r) : "";
    version = v ? reinterpret_cast<const char *>(v) : "";
  }
} gViewer;

static Value drawWithOpenGL(TestInstance *inst, TestOverlay *ov, const Value &a) {
  Project p = project();
  double psx = ov->pixelScale[0] > 0 ? ov->pixelScale[0] : 1, psy = ov->pixelScale[1] > 0 ? ov->pixelScale[1] : 1;
  int w = int(std::ceil(p.width / psx)), h = int(std::ceil(p.height / psy));
  if (a.has("viewport_size")) {
    std::vector<double> v = numbers(a.get("viewport_size"), 2, "viewport_size");
    w = int(v[0]);
    h = int(v[1]);
  }
  if (w < 1 || h < 1 || w > 16384 || h > 16384) throw HostError("OpenGL overlay: viewport of " + std::to_string(w) + "x" + std::to_string(h) + " pixels");
  gViewer.open(w, h);
  glViewport(0, 0, w, h);
  glClearColor(0, 0, 0, 0);
  glClear(GL_COLOR_BUFFER_BIT);
  glMatrixMode(GL_PROJECTION);
  glLoadIdentity();
  glOrtho(p.offsetX, p.offsetX + w * psx, p.offsetY, p.offsetY + h * psy, -1, 1);
  glMatrixMode(GL_MODELVIEW);
  glLoadIdentity();
  glEnable(GL_BLEND);
  glBlendFunc(GL_SRC_ALPHA, GL_ONE_MINUS_SRC_ALPHA);
  while (glGetError() != GL_NO_ERROR) {
  }
  OfxStatus st;
  {
    ActionScope scope("overlay kOfxInteractActionDraw (OpenGL)", inst->pluginId().c_str());
    double time = a.num("time", gTime.load());
    OfxPointD sc = scaleArg(a);
    st = guarded(inst, "overlay kOfxInteractActionDraw", [&]() { return ov->drawWith(nullptr, time, sc); });
  }
  GLenum err = glGetError();
  GLint modelview = 0, projection = 0, attribs = 0;
  glGetIntegerv(GL_MODELVIEW_STACK_DEPTH, &modelview);
  glGetIntegerv(GL_PROJECTION_STACK_DEPTH, &projection);
  glGetIntegerv(GL_ATTRIB_STACK_DEPTH, &attribs);
  glFinish();
  pixels::Buffer buf;
  buf.depth = pixels::Byte;
  buf.components = 4;
  buf.width = w;
  buf.height = h;
  buf.allocate();
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadPixels(0, 0, w, h, GL_RGBA, GL_UNSIGNED_BYTE, buf.data.data());  // bottom row first, as OFXR
  long drawn = 0;
  for (size_t i = 3; i < buf.data.size(); i += 4)
    if (buf.data[i - 3] || buf.data[i - 2] || buf.data[i - 1] || buf.data[i]) drawn++;
  eglMakeCurrent(gViewer.display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
  Value r;
  r["status"] = statName(st);
  r["overlay_entry"] = inst->overlayEntry;
  r["opengl"] = true;
  r["renderer"] = gViewer.renderer;
  r["version"] = gViewer.version;
  r["viewport_size"] = Value(json::Array{w, h});
  r["pixel_scale"] = Value(json::Array{psx, psy});
  r["drawn_pixels"] = double(drawn);
  r["gl_error"] = double(err);
  // A well-behaved overlay restores what it pushed.
  r["stack_depths"] = Value(json::Array{double(modelview), double(projection), double(attribs)});
  std::string out = a.str("out");
  if (!out.empty()) {
    pixels::writeFile(out, buf);
    r["out"] = out;
  }
  return r;
}

static int keySym(const Value &k, std::string &text) {
  if (k.isNumber()) return k.asInt();
  std::string s = k.asString();
  struct { const char *name; int sym; } table[] = {
      {"shift", kOfxKey_Shift_L}, {"ctrl", kOfxKey_Control_L}, {"control", kOfxKey_Control_L}, {"alt", kOfxKey_Alt_L},
      {"meta", kOfxKey_Meta_L},   {"super", kOfxKey_Super_L},  {"escape", kOfxKey_Escape},     {"return", kOfxKey_Return},
      {"enter", kOfxKey_KP_Enter}, {"tab", kOfxKey_Tab},      {"backspace", kOfxKey_BackSpace}, {"delete", kOfxKey_Delete},
      {"space", kOfxKey_space},   {"left", kOfxKey_Left},     {"right", kOfxKey_Right},         {"up", kOfxKey_Up},
      {"down", kOfxKey_Down},     {"home", kOfxKey_Home},     {"end", kOfxKey_End}};
  for (auto &e : table)
    if (s == e.name) {
      if (e.sym == kOfxKey_space) text = " ";
      return e.sym;
    }
  if (s.size() == 1) {
    text = s;
    return (unsigned char)s[0];
  }
  throw HostError("unknown key '" + s + "'");
}

static Value keyEvent(TestInstance *inst, TestOverlay *ov, const std::string &kind, int sym, const std::string &text,
                      double time, OfxPointD scale) {
  std::vector<char> buf(text.begin(), text.end());
  buf.push_back(0);
  OfxStatus st;
  ActionScope scope(("overlay key " + kind).c_str(), inst->pluginId().c_str());
  std::string what = "overlay key " + kind;
  if (kind == "down") {
    st = guarded(inst, what, [&]() { return ov->keyDownAction(time, scale, sym, buf.data()); });
    inst->heldKeys.insert(sym);
  } else if (kind == "up") {
    st = guarded(inst, what, [&]() { return ov->keyUpAction(time, scale, sym, buf.data()); });
    inst->heldKeys.erase(sym);
  } else if (kind == "repeat") {
    st = guarded(inst, what, [&]() { return ov->keyRepeatAction(time, scale, sym, buf.data()); });
  } else {
    throw HostError("key kind is down, up or repeat");
  }
  Value e;
  e["kind"] = kind;
  e["key"] = sym;
  e["status"] = statName(st);
  return e;
}

////////////////////////////////////////////////////////////////////////////////
// Commands

using Handler = std::function<Value(const Value &)>;

static void fireParamChanged(TestInstance *inst, const std::string &name, double time, Value &r) {
  OfxPointD one{1, 1};
  OfxStatus b, c, e;
  try {
    b = inst->beginInstanceChangedAction(kOfxChangeUserEdited);
    c = inst->paramInstanceChangedAction(name, kOfxChangeUserEdited, time, one);
    e = inst->endInstanceChangedAction(kOfxChangeUserEdited);
  } catch (H::Property::Exception &ex) {
    throw HostError(std::string("instance changed: ") + statName(ex.getStatus()));
  }
  r["begin_status"] = statName(b);
  r["status"] = statName(c);
  r["end_status"] = statName(e);
  r["clip_preferences_rerun"] = inst->areClipPrefsDirty();
  runClipPrefs(inst, false);
}

static Value paramValueJson(TestInstance *inst, H::Param::Instance *p) {
  Value v;
  if (ValueAccess *va = dynamic_cast<ValueAccess *>(p)) v = va->toJson();
  return v;
}

static Value saveDocument(TestInstance *inst) {
  Value params = Value::object();
  for (H::Param::Instance *p : inst->getParamList()) {
    ValueAccess *va = dynamic_cast<ValueAccess *>(p);
    if (!va) continue;
    bool persistent = true;
    try {
      persistent = p->getIsPersistant();
    } catch (...) {
    }
    if (persistent) params[p->getName()] = va->toJson();
  }
  Value doc;
  doc["format"] = "ofx-host-params/1";
  doc["plugin"] = inst->pluginId();
  doc["version"] = Value(json::Array{inst->getPlugin()->getVersionMajor(), inst->getPlugin()->getVersionMinor()});
  doc["context"] = inst->getContext();
  doc["params"] = params;
  return doc;
}

static std::string readText(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw HostError("cannot read '" + path + "'");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

static void destroyInstance(const std::string name) {  // by value: callers pass map keys
  auto it = gInstances.find(name);
  if (it == gInstances.end()) throw HostError("no instance '" + name + "'");
  joinJobs(it->second.get());
  {
    ActionScope scope(kOfxActionDestroyInstance, it->second->pluginId().c_str());
    gInstances.erase(it);
  }
  if (gCurrent == name) gCurrent = gInstances.empty() ? "" : gInstances.begin()->first;
}

static void unloadAll() {
  for (auto &kv : gJobs)
    if (kv.second->thread.joinable()) kv.second->thread.join();
  gJobs.clear();
  while (!gInstances.empty()) destroyInstance(gInstances.begin()->first);
  if (gEffectCache) {
    ActionScope scope("kOfxActionUnload", "");
    CerrCapture capture;
    H::PluginCache::clearPluginCache();
    gEffectCache.reset();
  }
  gLoadReport = Value();
}

static void notifySourceChanged(const std::string &clip, Value &r) {
  json::Array statuses;
  for (auto &kv : gInstances) {
    TestInstance *inst = kv.second.get();
    if (!inst->getClip(clip)) continue;
    OfxPointD one{1, 1};
    Value s;
    s["instance"] = kv.first;
    try {
      inst->beginInstanceChangedAction(kOfxChangeUserEdited);
      s["status"] = statName(inst->clipInstanceChangedAction(clip, kOfxChangeUserEdited, gTime.load(), one));
      inst->endInstanceChangedAction(kOfxChangeUserEdited);
      s["clip_preferences_ok"] = runClipPrefs(inst, true);
      s["clips"] = clipsJson(inst);
    } catch (std::exception &e) {
      s["error"] = e.what();
    } catch (H::Property::Exception &e) {
      s["error"] = statName(e.getStatus());
    }
    statuses.push_back(s);
  }
  r["instances"] = Value(statuses);
}

// The host and the plug-ins: ping, configure, load, suites, describe, unload.
static void addHostHandlers(std::map<std::string, Handler> &h) {
  h["ping"] = [](const Value &) {
    Value r;
    r["pong"] = true;
    return r;
  };

  h["configure"] = [](const Value &a) {
    if (a.has("host_name")) gConfig.hostName = a.str("host_name");
    if (a.has("host_label")) gConfig.hostLabel = a.str("host_label");
    if (a.has("question_reply")) gConfig.questionReply = a.str("question_reply");
    if (a.has("out_of_range")) gConfig.outOfRange = a.str("out_of_range");
    if (a.has("cpus")) gConfig.cpus = unsigned(std::max(1, a.integer("cpus", 1)));
    if (a.has("respect_thread_safety")) gConfig.respectThreadSafety = a.boolean("respect_thread_safety", true);
    if (a.has("temporal_clip_access")) gConfig.temporalAccess = a.boolean("temporal_clip_access", true);
    if (a.has("system_paths")) gConfig.systemPaths = a.boolean("system_paths", false);
    if (a.boolean("mlt", false)) {  // every MLT behaviour at once (the overlay aside: MLT has none)
      gConfig.clipFetch = Config::ClipFetch::CurrentFrame;
      gConfig.clipFrameRange = false;
      gConfig.hideSecretParams = true;
      gConfig.frameThreaded = true;
      gConfig.projectProps = false;
      gConfig.timelineBounds = false;
    }
    if (a.has("clip_fetch")) {
      std::string f = a.str("clip_fetch");
      if (f == "exact") gConfig.clipFetch = Config::ClipFetch::Exact;
      else if (f == "current_frame") gConfig.clipFetch = Config::ClipFetch::CurrentFrame;
      else throw HostError("clip_fetch is \"exact\" or \"current_frame\"");
    }
    if (a.has("clip_frame_range")) gConfig.clipFrameRange = a.boolean("clip_frame_range", true);
    if (a.has("project_props")) gConfig.projectProps = a.boolean("project_props", true);
    if (a.has("timeline_bounds")) gConfig.timelineBounds = a.boolean("timeline_bounds", true);
    if (a.has("secret_params")) {
      std::string v = a.str("secret_params");
      if (v != "visible" && v != "hidden") throw HostError("secret_params is \"visible\" or \"hidden\"");
      gConfig.hideSecretParams = v == "hidden";
    }
    if (a.has("frame_threaded")) gConfig.frameThreaded = a.boolean("frame_threaded", false);
    if (a.has("overlay_draw")) {
      std::string v = a.str("overlay_draw");
      if (v == "draw_suite") gConfig.overlayDraw = Config::OverlayDraw::DrawSuite;
      else if (v == "opengl") gConfig.overlayDraw = Config::OverlayDraw::OpenGL;
      else throw HostError("overlay_draw is \"draw_suite\" or \"opengl\"");
    }
    gHost->applyProperties();
    Value r;
    r["host_name"] = gConfig.hostName;
    r["cpus"] = gConfig.cpus;
    r["out_of_range"] = gConfig.outOfRange;
    r["temporal_clip_access"] = gConfig.temporalAccess && gConfig.clipFetch == Config::ClipFetch::Exact;
    r["clip_fetch"] = gConfig.clipFetch == Config::ClipFetch::Exact ? "exact" : "current_frame";
    r["clip_frame_range"] = gConfig.clipFrameRange;
    r["project_props"] = gConfig.projectProps;
    r["timeline_bounds"] = gConfig.timelineBounds;
    r["secret_params"] = gConfig.hideSecretParams ? "hidden" : "visible";
    r["frame_threaded"] = gConfig.frameThreaded;
    r["overlay_draw"] = gConfig.overlayDraw == Config::OverlayDraw::DrawSuite ? "draw_suite" : "opengl";
    return r;
  };

  h["load"] = [](const Value &a) { return cmdLoad(a); };

  h["suites"] = [](const Value &) {
    json::Array a;
    std::lock_guard<std::mutex> l(gSuiteMutex);
    for (auto &kv : gSuiteRequests) {
      Value s;
      s["suite"] = kv.first.first;
      s["version"] = kv.first.second;
      s["provided"] = kv.second.first;
      s["requests"] = double(kv.second.second);
      a.push_back(s);
    }
    Value r;
    r["suites"] = Value(a);
    return r;
  };

  h["describe"] = [](const Value &a) {
    IE::ImageEffectPlugin *p = findPlugin(a.str("plugin"));
    ensureLoaded(p);
    Value r = describeDescriptorBase(p->getDescriptor());
    r["id"] = p->getIdentifier();
    r["version"] = Value(json::Array{p->getVersionMajor(), p->getVersionMinor()});
    json::Array known;
    for (const auto &c : p->getContexts()) known.push_back(c);
    r["contexts"] = Value(known);
    if (a.has("context")) {
      std::string ctx = contextArg(a.str("context"));
      if (!p->getContexts().count(ctx)) throw HostError("the plug-in does not support the " + ctx + " context");
      IE::Descriptor *d;
      {
        ActionScope scope(kOfxImageEffectActionDescribeInContext, p->getIdentifier().c_str());
        CerrCapture capture;
        d = p->getContext(ctx);
      }
      if (!d) throw HostError("kOfxImageEffectActionDescribeInContext(" + ctx + ") failed");
      json::Array clips;
      for (IE::ClipDescriptor *c : d->getClipsByOrder()) {
        Value cj;
        cj["name"] = c->getName();
        cj["label"] = c->getLabel();
        json::Array comps;
        for (const auto &s : c->getSupportedComponents()) comps.push_back(s);
        cj["components"] = Value(comps);
        cj["optional"] = c->isOptional();
        cj["is_mask"] = c->isMask();
        cj["temporal_access"] = c->temporalAccess();
        cj["supports_tiles"] = c->supportsTiles();
        cj["field_extraction"] = c->getFieldExtraction();
        clips.push_back(cj);
      }
      json::Array params;
      for (H::Param::Descriptor *pd : d->getParamList()) params.push_back(paramSummary(*pd));
      r["context"] = ctx;
      r["clips"] = Value(clips);
      r["params"] = Value(params);
    }
    r["props"] = propsJson(p->getDescriptor().getProps());
    return r;
  };


  h["unload"] = [](const Value &) {
    unloadAll();
    return Value::object();
  };
}

// The project, the source footage, instances, clip preferences, the current time.
static void addSceneHandlers(std::map<std::string, Handler> &h) {
  h["set_project"] = [](const Value &a) {
    std::lock_guard<std::mutex> l(gStateMutex);
    gProject.width = a.num("width", gProject.width);
    gProject.height = a.num("height", gProject.height);
    gProject.par = a.num("pixel_aspect", gProject.par);
    gProject.frameRate = a.num("frame_rate", gProject.frameRate);
    gProject.duration = a.num("duration", gProject.duration);
    if (a.has("offset")) {
      std::vector<double> o = numbers(a.get("offset"), 2, "offset");
      gProject.offsetX = o[0];
      gProject.offsetY = o[1];
    }
    gProject.explicitlySet = true;
    return Value::object();
  };

  h["set_source"] = [](const Value &a) {
    std::string clip = a.str("clip", kOfxImageEffectSimpleSourceClipName);
    auto src = std::make_shared<Source>();
    src->first = a.integer("first_frame", 0);
    src->par = a.num("pixel_aspect", 1);
    src->frameRate = a.num("frame_rate", 24);
    std::string fo = a.str("field_order", "none");
    src->field = fo == "lower" ? kOfxImageFieldLower : fo == "upper" ? kOfxImageFieldUpper : kOfxImageFieldNone;
    src->outOfRange = a.str("out_of_range", "");
    const Value &frames = a.get("frames");
    if (!frames.isNull() && !frames.isArray()) throw HostError("frames must be an array of raw image paths");
    if (frames.isArray()) {
      for (const auto &f : frames.asArray()) src->frames.push_back(pixels::readFile(f.asString()));
    }
    if (!src->frames.empty()) {
      const pixels::Buffer &f0 = src->frames[0];
      src->depth = a.has("depth") ? pixels::depthFromName(a.str("depth")) : f0.depth;
      src->components = a.has("components") ? pixels::componentsFromName(a.str("components")) : f0.components;
      for (auto &f : src->frames) {
        if (f.width != f0.width || f.height != f0.height) throw HostError("all frames of a clip must have one size");
        f.x1 = f.y1 = 0;  // source images start at the origin
        if (f.depth != src->depth || f.components != src->components) f = pixels::convert(f, src->depth, src->components);
      }
      if (a.has("width") && a.integer("width", 0) != f0.width) throw HostError("frame width differs from 'width'");
      if (a.has("height") && a.integer("height", 0) != f0.height) throw HostError("frame height differs from 'height'");
    }
    std::string pm = a.str("premult", src->components == 4 ? "premultiplied" : "opaque");
    src->premult = pm == "premultiplied" ? kOfxImagePreMultiplied : pm == "unpremultiplied" ? kOfxImageUnPreMultiplied : kOfxImageOpaque;
    {
      std::lock_guard<std::mutex> l(gStateMutex);
      if (src->frames.empty()) gSources.erase(clip);
      else gSources[clip] = src;
      if (!gProject.explicitlySet && clip == kOfxImageEffectSimpleSourceClipName && !src->frames.empty()) {
        gProject.width = src->width() * src->par;
        gProject.height = src->height();
        gProject.offsetX = gProject.offsetY = 0;
        gProject.par = src->par;
        gProject.frameRate = src->frameRate;
        gProject.duration = double(src->frames.size());
      }
    }
    Value r;
    r["clip"] = clip;
    r["frames"] = double(src->frames.size());
    r["frame_range"] = Value(json::Array{src->first, src->first + int(src->frames.size()) - 1});
    r["width"] = src->width();
    r["height"] = src->height();
    r["depth"] = pixels::depthName(src->depth);
    r["components"] = pixels::componentsName(src->components);
    notifySourceChanged(clip, r);
    return r;
  };

  h["create_instance"] = [](const Value &a) {
    Value values = a.get("params");
    if (a.has("params_file")) values = json::parse(readText(a.str("params_file"))).get("params");
    return createInstance(a.str("plugin"), contextArg(a.str("context", "filter")), a.str("name", "main"), values,
                          a.boolean("interactive", true));
  };

  h["destroy_instance"] = [](const Value &a) {
    std::string name = a.str("instance", gCurrent);
    destroyInstance(name);
    Value r;
    r["destroyed"] = name;
    return r;
  };

  h["instances"] = [](const Value &) {
    json::Array a;
    for (auto &kv : gInstances) a.push_back(kv.first);
    Value r;
    r["instances"] = Value(a);
    r["current"] = gCurrent;
    return r;
  };

  h["clip_preferences"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r = prefsJson(inst);
    r["ok"] = runClipPrefs(inst, true);
    Value p = prefsJson(inst);
    for (const auto &kv : p.asObject()) r[kv.first] = kv.second;
    return r;
  };

  h["set_time"] = [](const Value &a) {
    gTime = a.num("time", 0);
    return Value::object();
  };
}

// Parameters: set and get, list, save and load (a project saved and reopened).
static void addParamHandlers(std::map<std::string, Handler> &h) {
  h["set_param"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    std::string name = a.str("name");
    H::Param::Instance *raw = nullptr;
    ValueAccess *va = valueParam(inst, name, &raw);
    Value r;
    inst->takeChanged();
    if (raw->getType() != kOfxParamTypePushButton) {
      if (!va) throw HostError("param '" + name + "' (" + raw->getType() + ") has no value");
      if (!a.has("value")) throw HostError("set_param needs a value");
      try {
        va->fromJson(a.get("value"));
      } catch (std::exception &e) {
        throw HostError("param '" + name + "': " + e.what());
      }
    }
    if (a.boolean("notify", true)) fireParamChanged(inst, name, a.num("time", gTime.load()), r);
    r["plugin_changed"] = inst->takeChanged();
    if (va) r["value"] = va->toJson();
    return r;
  };

  h["get_param"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    H::Param::Instance *raw = nullptr;
    valueParam(inst, a.str("name"), &raw);
    Value r = paramSummary(*raw);
    r["value"] = paramValueJson(inst, raw);
    if (ChoiceParam *c = dynamic_cast<ChoiceParam *>(raw)) {
      std::vector<std::string> o = c->options();
      int i = c->toJson().asInt();
      if (i >= 0 && size_t(i) < o.size()) r["option"] = o[size_t(i)];
    }
    return r;
  };

  h["params"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r;
    Value values = Value::object();
    json::Array all;
    for (H::Param::Instance *p : inst->getParamList()) {
      if (hiddenParam(p)) continue;
      Value s = paramSummary(*p);
      s["value"] = paramValueJson(inst, p);
      if (!a.boolean("props", false)) s["props"] = Value();
      if (dynamic_cast<ValueAccess *>(p)) values[p->getName()] = s.get("value");
      all.push_back(s);
    }
    r["values"] = values;
    r["params"] = Value(all);
    return r;
  };

  h["save_params"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r;
    r["sync_status"] = statName(inst->syncPrivateDataAction());
    Value doc = saveDocument(inst);
    std::string path = a.str("path");
    if (!path.empty()) {
      std::ofstream f(path, std::ios::binary);
      f << doc.dump() << "\n";
      if (!f) throw HostError("cannot write '" + path + "'");
      r["path"] = path;
    }
    r["document"] = doc;
    return r;
  };

  h["load_params"] = [](const Value &a) {
    Value doc = json::parse(readText(a.str("path")));
    if (doc.str("format") != "ofx-host-params/1") throw HostError("not an ofx-host-params/1 document");
    if (a.boolean("recreate", true)) {
      // Project reopen: a new instance with the saved values set before kOfxActionCreateInstance.
      std::string name = a.str("instance", gCurrent.empty() ? "main" : gCurrent);
      if (gInstances.count(name)) destroyInstance(name);
      return createInstance(doc.str("plugin"), doc.str("context", kOfxImageEffectContextFilter), name, doc.get("params"),
                            a.boolean("interactive", true));
    }
    TestInstance *inst = instanceArg(a);
    Value r;
    json::Array changes;
    for (const auto &kv : doc.get("params").asObject()) {
      H::Param::Instance *hp = inst->getParam(kv.first);
      if (hp && hiddenParam(hp)) continue;
      ValueAccess *va = valueParam(inst, kv.first);
      if (!va) continue;
      va->fromJson(kv.second);
      Value c;
      c["name"] = kv.first;
      fireParamChanged(inst, kv.first, gTime.load(), c);
      changes.push_back(c);
    }
    r["changes"] = Value(changes);
    return r;
  };
}

// Actions, regions of definition, time domains, renders, waiting and aborting.
static void addRenderHandlers(std::map<std::string, Handler> &h) {
  h["action"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    std::string n = a.str("name");
    OfxStatus st;
    if (n == "purge_caches") st = inst->purgeCachesAction();
    else if (n == "sync_private_data") st = inst->syncPrivateDataAction();
    else if (n == "begin_edit") st = inst->beginInstanceEditAction();
    else if (n == "end_edit") st = inst->endInstanceEditAction();
    else throw HostError("action is purge_caches, sync_private_data, begin_edit or end_edit");
    Value r;
    r["status"] = statName(st);
    return r;
  };

  h["rod"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    runClipPrefs(inst, false);
    OfxRectD rod{0, 0, 0, 0};
    OfxStatus st = inst->getRegionOfDefinitionAction(a.num("time", gTime.load()), scaleArg(a), rod);
    Value r;
    r["status"] = statName(st);
    r["rod"] = rectJson(rod);
    return r;
  };

  h["time_domain"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    OfxRangeD range{0, 0};
    OfxStatus st = inst->getTimeDomainAction(range);
    Value r;
    r["status"] = statName(st);
    r["range"] = Value(json::Array{range.min, range.max});
    return r;
  };

  h["render"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    if (a.boolean("async", false)) {
      int id = gNextJob++;
      std::unique_ptr<Job> job(new Job);
      job->inst = inst;
      Job *j = job.get();
      Value args = a;
      j->thread = std::thread([j, inst, args]() {
        Value res;
        try {
          res = doRender(inst, args);
          res["ok"] = true;
        } catch (std::exception &e) {
          res["ok"] = false;
          res["error"] = e.what();
        } catch (H::Property::Exception &e) {
          res["ok"] = false;
          res["error"] = std::string("property exception: ") + statName(e.getStatus());
        }
        j->result = res;
        j->done = true;
      });
      gJobs[id] = std::move(job);
      Value r;
      r["job"] = id;
      return r;
    }
    return doRender(inst, a);
  };

  h["wait"] = [](const Value &a) {
    int id = a.integer("job", 0);
    auto it = gJobs.find(id);
    if (it == gJobs.end()) throw HostError("no job " + std::to_string(id));
    if (it->second->thread.joinable()) it->second->thread.join();
    Value r = it->second->result;
    gJobs.erase(it);
    if (!r.boolean("ok", false)) throw HostError(r.str("error", "render failed"));
    return r;
  };

  // {} cancels now; {at_progress: p} / {after_polls: k} / {after_ms: t} arm a cancel (for actions
  // other than render too, e.g. a long instanceChanged that reports progress); {reset: true} clears.
  // Each render starts from a clear state and its own abort_* arguments.
  h["abort"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    bool arm = a.has("at_progress") || a.has("after_polls") || a.has("after_ms");
    if (a.boolean("reset", false) || arm) {
      inst->abortFlag = false;
      inst->abortPolls = 0;
      inst->abortAfterPolls = a.has("after_polls") ? long(a.num("after_polls", 0)) : -1;
      inst->abortAtProgress = a.num("at_progress", 1e300);
      inst->abortDeadlineMs = a.has("after_ms") ? nowMs() + a.num("after_ms", 0) : -1;
    } else {
      inst->abortFlag = true;
    }
    Value r;
    r["aborted"] = inst->abortFlag.load();
    r["abort_polls"] = double(inst->abortPolls.load());
    return r;
  };
}

// The viewer overlay: pen, keys, focus, drawing.
static void addOverlayHandlers(std::map<std::string, Handler> &h) {
  h["pen"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    TestOverlay *ov = ensureOverlay(inst);
    double time = a.num("time", gTime.load());
    OfxPointD scale = scaleArg(a);
    if (a.has("pixel_scale")) {
      std::vector<double> ps = numbers(a.get("pixel_scale"), 2, "pixel_scale");
      ov->pixelScale[0] = ps[0];
      ov->pixelScale[1] = ps[1];
    }
    Value r;
    inst->takeChanged();
    long redraws0 = ov->redraws.load();
    // Modifiers: OFX has no modifier state on pen events, plug-ins track key down/up of the
    // modifier keys; press and release them so the held set matches the request.
    std::set<int> want;
    const Value &mods = a.get("modifiers");
    if (mods.isArray()) {
      for (const auto &m : mods.asArray()) {
        std::string t;
        want.insert(keySym(m, t));
      }
    }
    json::Array keys;
    std::set<int> held = inst->heldKeys;
    for (int k : held)
      if (!want.count(k)) keys.push_back(keyEvent(inst, ov, "up", k, "", time, scale));
    for (int k : want)
      if (!held.count(k)) keys.push_back(keyEvent(inst, ov, "down", k, "", time, scale));
    r["key_events"] = Value(keys);

    OfxPointD pos{a.num("x", 0), a.num("y", 0)};
    OfxPointI vp{int(pos.x), int(pos.y)};
    if (a.has("viewport")) {
      std::vector<double> v = numbers(a.get("viewport"), 2, "viewport");
      vp = OfxPointI{int(v[0]), int(v[1])};
    }
    double pressure = a.num("pressure", 1.0);
    std::string kind = a.str("kind", "down");
    OfxStatus st;
    {
      ActionScope scope(("overlay pen " + kind).c_str(), inst->pluginId().c_str());
      std::string what = "overlay pen " + kind;
      if (kind == "down") st = guarded(inst, what, [&]() { return ov->penDownAction(time, scale, pos, vp, pressure); });
      else if (kind == "motion") st = guarded(inst, what, [&]() { return ov->penMotionAction(time, scale, pos, vp, pressure); });
      else if (kind == "up") st = guarded(inst, what, [&]() { return ov->penUpAction(time, scale, pos, vp, pressure); });
      else throw HostError("pen kind is down, motion or up");
    }
    r["status"] = statName(st);
    r["handled"] = st == kOfxStatOK;
    r["redraws"] = double(ov->redraws.load() - redraws0);
    r["plugin_changed"] = inst->takeChanged();
    return r;
  };

  h["key"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    TestOverlay *ov = ensureOverlay(inst);
    std::string text = a.str("string", "");
    std::string t2;
    int sym = keySym(a.get("key"), t2);
    if (text.empty()) text = t2;
    inst->takeChanged();
    Value r = keyEvent(inst, ov, a.str("kind", "down"), sym, text, a.num("time", gTime.load()), scaleArg(a));
    r["plugin_changed"] = inst->takeChanged();
    return r;
  };

  h["focus"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    TestOverlay *ov = ensureOverlay(inst);
    double time = a.num("time", gTime.load());
    OfxPointD sc = scaleArg(a);
    bool gain = a.boolean("gain", true);
    OfxStatus st = guarded(inst, "overlay focus", [&]() {
      return gain ? ov->gainFocusAction(time, sc) : ov->loseFocusAction(time, sc);
    });
    Value r;
    r["status"] = statName(st);
    return r;
  };

  h["draw"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    TestOverlay *ov = ensureOverlay(inst);
    if (a.has("pixel_scale")) {
      std::vector<double> ps = numbers(a.get("pixel_scale"), 2, "pixel_scale");
      ov->pixelScale[0] = ps[0];
      ov->pixelScale[1] = ps[1];
    }
    if (gConfig.overlayDraw == Config::OverlayDraw::OpenGL) return drawWithOpenGL(inst, ov, a);
    DrawContext dc;
    OfxStatus st;
    {
      ActionScope scope("overlay kOfxInteractActionDraw", inst->pluginId().c_str());
      double time = a.num("time", gTime.load());
      OfxPointD sc = scaleArg(a);
      st = guarded(inst, "overlay kOfxInteractActionDraw", [&]() { return ov->drawWith(&dc, time, sc); });
    }
    Value r;
    r["status"] = statName(st);
    r["overlay_entry"] = inst->overlayEntry;
    r["ops"] = Value(dc.ops);
    return r;
  };
}

// What the host recorded: messages, progress, events, image fetches, live images.
static void addRecordHandlers(std::map<std::string, Handler> &h) {
  h["messages"] = [](const Value &a) {
    bool clear = a.boolean("clear", false);
    Value r;
    if (!gInstances.empty() && (a.has("instance") || !gCurrent.empty())) {
      TestInstance *inst = instanceArg(a);
      r["persistent"] = inst->persistentMessage();
      r["log"] = inst->messages.take(clear);
    } else {
      r["persistent"] = Value();
      r["log"] = Value::array();
    }
    r["host_log"] = gHostMessages.take(clear);
    return r;
  };

  h["progress"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r;
    r["log"] = inst->progress.take(a.boolean("clear", false));
    return r;
  };

  h["events"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r;
    r["log"] = inst->events.take(a.boolean("clear", false));
    r["plugin_param_changes"] = inst->pluginChanges.take(a.boolean("clear", false));
    return r;
  };

  h["fetches"] = [](const Value &a) {
    TestInstance *inst = instanceArg(a);
    Value r;
    r["log"] = inst->fetches.take(a.boolean("clear", false));
    return r;
  };

  h["images"] = [](const Value &) {
    Value r;
    r["live_images"] = double(gLiveImages.load());
    return r;
  };
}

static std::map<std::string, Handler> makeHandlers() {
  std::map<std::string, Handler> h;
  addHostHandlers(h);
  addSceneHandlers(h);
  addParamHandlers(h);
  addRenderHandlers(h);
  addOverlayHandlers(h);
  addRecordHandlers(h);
  return h;
}

////////////////////////////////////////////////////////////////////////////////

int main(int argc, char **argv) {
  // The protocol owns the real stdout; everything else printing to stdout lands on stderr.
  gMainThread = std::this_thread::get_id();
  gProtoFd = dup(1);
  dup2(2, 1);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  installCrashHandlers();
  if (const char *n = getenv("OFX_HOST_NAME")) gConfig.hostName = n;

  gHost = new TestHost;
  H::PluginCache::getPluginCache()->setCacheVersion("ofx-host-v1");
  std::map<std::string, Handler> handlers = makeHandlers();

  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Value resp;
    Value req;
    std::string cmd;
    try {
      req = json::parse(line);
      if (!req.isObject()) throw HostError("a command is a JSON object");
      cmd = req.str("cmd");
      if (cmd == "quit") break;
      auto it = handlers.find(cmd);
      if (it == handlers.end()) throw HostError("unknown command '" + cmd + "'");
      ActionScope scope(("command " + cmd).c_str(), "");
      Value r = it->second(req);
      resp = Value::object();
      resp["ok"] = true;
      for (const auto &kv : r.isObject() ? r.asObject() : json::Object()) resp[kv.first] = kv.second;
    } catch (H::Property::Exception &e) {
      resp = Value::object();
      resp["ok"] = false;
      resp["error"] = std::string("property error: ") + statName(e.getStatus());
    } catch (std::exception &e) {
      resp = Value::object();
      resp["ok"] = false;
      resp["error"] = e.what();
    } catch (...) {
      resp = Value::object();
      resp["ok"] = false;
      resp["error"] = "unknown exception";
    }
    resp["cmd"] = cmd;
    if (req.has("id")) resp["id"] = req.get("id");
    emit(resp);
  }

  try {
    unloadAll();
  } catch (...) {
  }
  Value bye;
  bye["ok"] = true;
  bye["cmd"] = "quit";
  emit(bye);
  _exit(0);
}

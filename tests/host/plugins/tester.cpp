// "OFX Host Tester": a small OpenFX plug-in (plain C API) that uses every host feature the test host
// offers, so the host can be tested without the SAM 2 plug-in. Identifier net.sam2rotoscope.test.Tester.
//
// Render: out = f(Source at time + offset_frames), with f = invert? (1 - rgb) : rgb, times tint * gain
// (alpha kept); mode "Constant" writes `colour`; `show_point` stamps a `size`-wide square of `colour`
// around `point` (canonical coordinates). Rows are split over the multi-thread suite. With
// render_delay_ms > 0 it reports progress in ten steps and stops early when the host aborts.
// A non-empty `message` makes the render fail with that persistent error message.
// Overlay (V1 entry, drawn with OfxDrawSuiteV1 when the host has it): pen down/motion moves `point`;
// every pen and key event is written into `last_event` ("pen down 10 20 [shift,ctrl]"), pen downs
// counted in `pen_downs`. Push buttons: `reset` (gain 1, label "reset"), `ask` (a question message;
// the reply goes to `last_event`), `work` (ten progress steps in instanceChanged, stops when the
// host cancels; `last_event` says "work done" or "work cancelled after <k>").
//
// What a host hands over (for hosts that differ, like MLT): with `report` on, each render posts a
// kOfxMessageLog message "render t=<time> asked=<source time> got=<image unique id> range=<a>..<b> |
// absent duration=<effect duration> hidden_gain=<value> project=<w>x<h> fps=<rate> timeline=<a>..<b> |
// unsupported": the time it rendered, the source time it asked for, the identifier of the image it
// got, the Source clip's kOfxImageEffectPropFrameRange (absent when the host has none), the effect's
// kOfxImageEffectInstancePropEffectDuration, project size and frame rate (-1: not set), and the
// timeline suite's bounds.
// `hidden_gain` is a secret param (kOfxParamPropSecret 1), multiplying `gain`.
// Without OfxDrawSuiteV1, the overlay draws with legacy OpenGL (entry points looked up at run time
// in the host's process): a filled `size` square of `colour` at `point`, and a 1-pixel line loop
// around it.
//
// Failure injection (environment, read at kOfxActionLoad, for testing hosts' error paths):
//   OFX_TESTER_FAIL=all | instance | <action>[,<action>...]   actions fail with kOfxStatFailed
//     "all": every action, kOfxActionLoad included; "instance": every action on an instance after
//     kOfxActionCreateInstance (and the overlay's), but not load/describe/create/destroy/unload.
//     <action>: an OFX action name, e.g. OfxImageEffectActionRender; overlay actions as
//     interact:<name>, e.g. interact:OfxInteractActionPenDown.
//   OFX_TESTER_FAIL_MODE=throw   throw a C++ exception instead of returning kOfxStatFailed.
//   OFX_TESTER_CRASH=<action>    dereference a null pointer in that action (the host must report it).

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "ofxCore.h"
#include "ofxDrawSuite.h"
#include "ofxImageEffect.h"
#include "ofxInteract.h"
#include "ofxKeySyms.h"
#include "ofxMemory.h"
#include "ofxMessage.h"
#include "ofxMultiThread.h"
#include "ofxParam.h"
#include "ofxProgress.h"
#include "ofxProperty.h"
#include "ofxTimeLine.h"

#include "../pixels.h"

#define EXPORT __attribute__((visibility("default")))

static OfxHost *gHost = nullptr;
static OfxImageEffectSuiteV1 *gEffect = nullptr;
static OfxPropertySuiteV1 *gProp = nullptr;
static OfxParameterSuiteV1 *gParam = nullptr;
static OfxMultiThreadSuiteV1 *gThread = nullptr;
static OfxMessageSuiteV2 *gMessage2 = nullptr;
static OfxMessageSuiteV1 *gMessage1 = nullptr;
static OfxProgressSuiteV1 *gProgress = nullptr;
static OfxInteractSuiteV1 *gInteract = nullptr;
static OfxDrawSuiteV1 *gDraw = nullptr;
static OfxTimeLineSuiteV1 *gTimeLine = nullptr;

static std::set<std::string> gFail;
static bool gFailThrow = false;

static void readFailures() {
  gFail.clear();
  const char *f = getenv("OFX_TESTER_FAIL");
  std::string s = f ? f : "";
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) gFail.insert(s.substr(start, end - start));
    start = end + 1;
  }
  const char *m = getenv("OFX_TESTER_FAIL_MODE");
  gFailThrow = m && std::string(m) == "throw";
}

static void maybeCrash(const char *action) {
  const char *c = getenv("OFX_TESTER_CRASH");
  if (c && strcmp(c, action) == 0) {
    volatile int *null = nullptr;
    *null = 1;
  }
}

static bool shouldFail(const std::string &action, bool onInstance) {
  if (gFail.count("all") || gFail.count(action)) return true;
  return onInstance && gFail.count("instance");
}

// ---------------------------------------------------------------------------------------------
// Instance data

struct Instance {
  OfxImageClipHandle source = nullptr, output = nullptr;
  OfxParamHandle gain, offset, invert, mode, colour, tint, point, size, label, lastEvent, penDowns, reset, ask,
      work, message, delay, showPoint, identity, report, hiddenGain;
};

static Instance *getInstance(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props;
  gEffect->getPropertySet(effect, &props);
  void *p = nullptr;
  gProp->propGetPointer(props, kOfxPropInstanceData, 0, &p);
  return static_cast<Instance *>(p);
}

static void setString(OfxParamHandle p, const std::string &s) { gParam->paramSetValue(p, s.c_str()); }

// ---------------------------------------------------------------------------------------------
// Describe

static OfxStatus describe(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props;
  gEffect->getPropertySet(effect, &props);
  gProp->propSetString(props, kOfxPropLabel, 0, "OFX Host Tester");
  gProp->propSetString(props, kOfxImageEffectPluginPropGrouping, 0, "Test");
  gProp->propSetString(props, kOfxPropPluginDescription, 0, "Exercises every host feature");
  gProp->propSetString(props, kOfxImageEffectPropSupportedContexts, 0, kOfxImageEffectContextFilter);
  gProp->propSetString(props, kOfxImageEffectPropSupportedContexts, 1, kOfxImageEffectContextGeneral);
  gProp->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 0, kOfxBitDepthByte);
  gProp->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 1, kOfxBitDepthShort);
  gProp->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 2, kOfxBitDepthHalf);
  gProp->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 3, kOfxBitDepthFloat);
  gProp->propSetString(props, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderFullySafe);
  gProp->propSetInt(props, kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
  gProp->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 1);
  gProp->propSetInt(props, kOfxImageEffectPropTemporalClipAccess, 0, 1);
  gProp->propSetInt(props, kOfxImageEffectPluginPropFieldRenderTwiceAlways, 0, 0);
  extern OfxStatus overlayMain(const char *, const void *, OfxPropertySetHandle, OfxPropertySetHandle);
  gProp->propSetPointer(props, kOfxImageEffectPluginPropOverlayInteractV1, 0, (void *)overlayMain);
  // One entry for both: it draws with the Draw Suite when given a draw context, else with OpenGL.
  gProp->propSetPointer(props, kOfxImageEffectPluginPropOverlayInteractV2, 0, (void *)overlayMain);
  return kOfxStatOK;
}

static void defineParam(OfxParamSetHandle set, const char *type, const char *name, const char *label,
                        OfxPropertySetHandle *out) {
  OfxPropertySetHandle props;
  gParam->paramDefine(set, type, name, &props);
  gProp->propSetString(props, kOfxPropLabel, 0, label);
  gProp->propSetString(props, kOfxParamPropHint, 0, label);
  if (out) *out = props;
}

static OfxStatus describeInContext(OfxImageEffectHandle effect, OfxPropertySetHandle inArgs) {
  OfxPropertySetHandle props;
  for (const char *name : {kOfxImageEffectOutputClipName, kOfxImageEffectSimpleSourceClipName}) {
    gEffect->clipDefine(effect, name, &props);
    gProp->propSetString(props, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
    gProp->propSetString(props, kOfxImageEffectPropSupportedComponents, 1, kOfxImageComponentRGB);
    gProp->propSetString(props, kOfxImageEffectPropSupportedComponents, 2, kOfxImageComponentAlpha);
    gProp->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 1);
    if (strcmp(name, kOfxImageEffectSimpleSourceClipName) == 0) gProp->propSetInt(props, kOfxImageClipPropIsMask, 0, 0);
  }
  OfxParamSetHandle set;
  gEffect->getParamSet(effect, &set);
  OfxPropertySetHandle p;
  defineParam(set, kOfxParamTypeDouble, "gain", "Gain", &p);
  gProp->propSetDouble(p, kOfxParamPropDefault, 0, 1.0);
  defineParam(set, kOfxParamTypeInteger, "offset_frames", "Frame offset", &p);
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 0);
  defineParam(set, kOfxParamTypeBoolean, "invert", "Invert", &p);
  defineParam(set, kOfxParamTypeChoice, "mode", "Mode", &p);
  gProp->propSetString(p, kOfxParamPropChoiceOption, 0, "Source");
  gProp->propSetString(p, kOfxParamPropChoiceOption, 1, "Constant");
  defineParam(set, kOfxParamTypeRGBA, "colour", "Colour", &p);
  gProp->propSetDouble(p, kOfxParamPropDefault, 0, 1.0);
  gProp->propSetDouble(p, kOfxParamPropDefault, 1, 0.0);
  gProp->propSetDouble(p, kOfxParamPropDefault, 2, 0.0);
  gProp->propSetDouble(p, kOfxParamPropDefault, 3, 1.0);
  defineParam(set, kOfxParamTypeRGB, "tint", "Tint", &p);
  for (int i = 0; i < 3; i++) gProp->propSetDouble(p, kOfxParamPropDefault, i, 1.0);
  defineParam(set, kOfxParamTypeDouble2D, "point", "Point", &p);
  gProp->propSetString(p, kOfxParamPropDoubleType, 0, kOfxParamDoubleTypeXYAbsolute);
  gProp->propSetString(p, kOfxParamPropDefaultCoordinateSystem, 0, kOfxParamCoordinatesNormalised);
  gProp->propSetDouble(p, kOfxParamPropDefault, 0, 0.5);
  gProp->propSetDouble(p, kOfxParamPropDefault, 1, 0.5);
  defineParam(set, kOfxParamTypeInteger2D, "size", "Marker size", &p);
  gProp->propSetInt(p, kOfxParamPropDefault, 0, 4);
  gProp->propSetInt(p, kOfxParamPropDefault, 1, 4);
  defineParam(set, kOfxParamTypeBoolean, "show_point", "Show point", &p);
  defineParam(set, kOfxParamTypeBoolean, "identity", "Identity when neutral", &p);
  defineParam(set, kOfxParamTypeBoolean, "report", "Report what the host hands over", &p);
  defineParam(set, kOfxParamTypeDouble, "hidden_gain", "Hidden gain", &p);
  gProp->propSetDouble(p, kOfxParamPropDefault, 0, 1.0);
  gProp->propSetInt(p, kOfxParamPropSecret, 0, 1);
  defineParam(set, kOfxParamTypeString, "label", "Label", &p);
  gProp->propSetString(p, kOfxParamPropDefault, 0, "hello");
  defineParam(set, kOfxParamTypeString, "message", "Render error message", &p);
  defineParam(set, kOfxParamTypeInteger, "render_delay_ms", "Render delay (ms)", &p);
  defineParam(set, kOfxParamTypeString, "last_event", "Last event", &p);
  gProp->propSetInt(p, kOfxParamPropEvaluateOnChange, 0, 0);
  defineParam(set, kOfxParamTypeInteger, "pen_downs", "Pen downs", &p);
  gProp->propSetInt(p, kOfxParamPropEvaluateOnChange, 0, 0);
  defineParam(set, kOfxParamTypePushButton, "reset", "Reset", &p);
  defineParam(set, kOfxParamTypePushButton, "ask", "Ask a question", &p);
  defineParam(set, kOfxParamTypePushButton, "work", "Long work", &p);
  defineParam(set, kOfxParamTypePage, "Main", "Main", &p);
  int i = 0;
  for (const char *c : {"gain", "offset_frames", "invert", "mode", "colour", "tint", "point", "size", "show_point",
                        "identity", "report", "hidden_gain", "label", "message", "render_delay_ms", "last_event", "pen_downs",
                        "reset", "ask", "work"})
    gProp->propSetString(p, kOfxParamPropPageChild, i++, c);
  return kOfxStatOK;
}

static OfxStatus createInstance(OfxImageEffectHandle effect) {
  Instance *d = new Instance;
  gEffect->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &d->source, nullptr);
  gEffect->clipGetHandle(effect, kOfxImageEffectOutputClipName, &d->output, nullptr);
  OfxParamSetHandle set;
  gEffect->getParamSet(effect, &set);
  struct { const char *name; OfxParamHandle *h; } all[] = {
      {"gain", &d->gain},   {"offset_frames", &d->offset}, {"invert", &d->invert},       {"mode", &d->mode},
      {"colour", &d->colour}, {"tint", &d->tint},           {"point", &d->point},         {"size", &d->size},
      {"label", &d->label}, {"last_event", &d->lastEvent}, {"pen_downs", &d->penDowns},  {"reset", &d->reset},
      {"ask", &d->ask},     {"work", &d->work},            {"message", &d->message},      {"render_delay_ms", &d->delay}, {"show_point", &d->showPoint},
      {"identity", &d->identity}, {"report", &d->report}, {"hidden_gain", &d->hiddenGain}};
  for (auto &e : all) {
    if (gParam->paramGetHandle(set, e.name, e.h, nullptr) != kOfxStatOK) {
      delete d;
      return kOfxStatFailed;
    }
  }
  OfxPropertySetHandle props;
  gEffect->getPropertySet(effect, &props);
  gProp->propSetPointer(props, kOfxPropInstanceData, 0, d);
  return kOfxStatOK;
}

static OfxStatus destroyInstance(OfxImageEffectHandle effect) {
  delete getInstance(effect);
  return kOfxStatOK;
}

// ---------------------------------------------------------------------------------------------
// Render

struct Img {
  OfxPropertySetHandle h = nullptr;
  pixels::Depth depth = pixels::DepthNone;
  int comps = 0, rowBytes = 0;
  OfxRectI bounds{0, 0, 0, 0};
  uint8_t *data = nullptr;
  bool fetch(OfxImageClipHandle clip, double time) {
    if (gEffect->clipGetImage(clip, time, nullptr, &h) != kOfxStatOK || !h) return false;
    char *s = nullptr;
    gProp->propGetString(h, kOfxImageEffectPropPixelDepth, 0, &s);
    depth = pixels::depthFromOfx(s ? s : "");
    gProp->propGetString(h, kOfxImageEffectPropComponents, 0, &s);
    comps = pixels::componentsFromOfx(s ? s : "");
    gProp->propGetInt(h, kOfxImagePropRowBytes, 0, &rowBytes);
    gProp->propGetIntN(h, kOfxImagePropBounds, 4, &bounds.x1);
    void *p = nullptr;
    gProp->propGetPointer(h, kOfxImagePropData, 0, &p);
    data = static_cast<uint8_t *>(p);
    return true;
  }
  uint8_t *at(int x, int y) const {
    if (!data || x < bounds.x1 || x >= bounds.x2 || y < bounds.y1 || y >= bounds.y2) return nullptr;
    return data + ptrdiff_t(y - bounds.y1) * rowBytes + ptrdiff_t(x - bounds.x1) * comps * pixels::bytesPerSample(depth);
  }
  ~Img() {
    if (h) gEffect->clipReleaseImage(h);
  }
};

struct RenderJob {
  OfxImageEffectHandle effect;
  const Img *src;
  const Img *dst;
  OfxRectI window;
  double gain, colour[4], tint[3];
  bool invert, constant, showPoint;
  double px, py;  // point in pixel coordinates
  double half;    // half marker size in pixels
};

static void renderRows(const RenderJob &j, int y1, int y2) {
  for (int y = y1; y < y2; y++) {
    if (gEffect->abort(j.effect)) return;
    for (int x = j.window.x1; x < j.window.x2; x++) {
      uint8_t *dp = j.dst->at(x, y);
      if (!dp) continue;
      float rgba[4] = {0, 0, 0, 0};
      bool marker = j.showPoint && std::fabs(x + 0.5 - j.px) <= j.half && std::fabs(y + 0.5 - j.py) <= j.half;
      if (j.constant || marker) {
        for (int c = 0; c < 4; c++) rgba[c] = float(j.colour[c]);
      } else if (const uint8_t *sp = j.src ? j.src->at(x, y) : nullptr) {
        pixels::readRGBA(sp, j.src->depth, j.src->comps, rgba);
        for (int c = 0; c < 3; c++) {
          float v = j.invert ? 1.0f - rgba[c] : rgba[c];
          rgba[c] = float(v * j.tint[c] * j.gain);
        }
      }
      pixels::writeRGBA(dp, j.dst->depth, j.dst->comps, rgba);
    }
  }
}

static void threadFunc(unsigned int index, unsigned int n, void *arg) {
  const RenderJob &j = *static_cast<RenderJob *>(arg);
  int rows = j.window.y2 - j.window.y1;
  int a = j.window.y1 + int(rows * (long)index / n), b = j.window.y1 + int(rows * (long)(index + 1) / n);
  renderRows(j, a, b);
}

static std::string fmtRange(double a, double b) {
  char s[64];
  snprintf(s, sizeof s, "%g..%g", a, b);
  return s;
}

static OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle inArgs) {
  Instance *d = getInstance(effect);
  double time;
  RenderJob j;
  j.effect = effect;
  gProp->propGetDouble(inArgs, kOfxPropTime, 0, &time);
  gProp->propGetIntN(inArgs, kOfxImageEffectPropRenderWindow, 4, &j.window.x1);
  double scale[2] = {1, 1};
  gProp->propGetDoubleN(inArgs, kOfxImageEffectPropRenderScale, 2, scale);

  const char *msg = nullptr;
  gParam->paramGetValueAtTime(d->message, time, &msg);
  if (msg && *msg) {
    if (gMessage2) gMessage2->setPersistentMessage(effect, kOfxMessageError, "tester.render", "%s", msg);
    return kOfxStatFailed;
  }
  if (gMessage2) gMessage2->clearPersistentMessage(effect);

  int offset = 0, mode = 0, delay = 0, inv = 0, show = 0, size[2] = {0, 0};
  gParam->paramGetValueAtTime(d->offset, time, &offset);
  gParam->paramGetValueAtTime(d->mode, time, &mode);
  gParam->paramGetValueAtTime(d->delay, time, &delay);
  gParam->paramGetValueAtTime(d->invert, time, &inv);
  gParam->paramGetValueAtTime(d->showPoint, time, &show);
  gParam->paramGetValueAtTime(d->size, time, &size[0], &size[1]);
  gParam->paramGetValueAtTime(d->gain, time, &j.gain);
  double hidden = 1;
  gParam->paramGetValueAtTime(d->hiddenGain, time, &hidden);
  j.gain *= hidden;
  int report = 0;
  gParam->paramGetValueAtTime(d->report, time, &report);
  gParam->paramGetValueAtTime(d->colour, time, &j.colour[0], &j.colour[1], &j.colour[2], &j.colour[3]);
  gParam->paramGetValueAtTime(d->tint, time, &j.tint[0], &j.tint[1], &j.tint[2]);
  double pt[2];
  gParam->paramGetValueAtTime(d->point, time, &pt[0], &pt[1]);
  OfxPropertySetHandle effectProps;
  gEffect->getPropertySet(effect, &effectProps);
  double par = 1;
  gProp->propGetDouble(effectProps, kOfxImageEffectPropProjectPixelAspectRatio, 0, &par);
  j.invert = inv != 0;
  j.constant = mode == 1;
  j.showPoint = show != 0;
  j.px = pt[0] * scale[0] / par;
  j.py = pt[1] * scale[1];
  j.half = size[0] * scale[0] / 2.0;

  if (delay > 0 && gProgress) {
    gProgress->progressStart(effect, "Tester render");
    for (int k = 1; k <= 10; k++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay / 10));
      if (gProgress->progressUpdate(effect, k / 10.0) != kOfxStatOK || gEffect->abort(effect)) {
        gProgress->progressEnd(effect);
        return kOfxStatOK;  // aborted: the output does not matter
      }
    }
    gProgress->progressEnd(effect);
  }

  Img dst, src;
  if (!dst.fetch(d->output, time)) return gEffect->abort(effect) ? kOfxStatOK : kOfxStatFailed;
  if (!j.constant && !src.fetch(d->source, time + offset)) {
    if (gEffect->abort(effect)) return kOfxStatOK;
    if (gMessage2) gMessage2->setPersistentMessage(effect, kOfxMessageError, "tester.source", "no source image at %g", time + offset);
    return kOfxStatFailed;
  }
  if (report && gMessage1) {
    std::string got = "none", range = "absent";
    if (!j.constant) {
      char *uid = nullptr;
      gProp->propGetString(src.h, kOfxImagePropUniqueIdentifier, 0, &uid);
      got = uid ? uid : "";
    }
    OfxPropertySetHandle clipProps = nullptr;
    double r[2] = {0, 0}, duration = -1;
    if (gEffect->clipGetPropertySet(d->source, &clipProps) == kOfxStatOK &&
        gProp->propGetDoubleN(clipProps, kOfxImageEffectPropFrameRange, 2, r) == kOfxStatOK)
      range = fmtRange(r[0], r[1]);
    gProp->propGetDouble(effectProps, kOfxImageEffectInstancePropEffectDuration, 0, &duration);
    double size[2] = {-1, -1}, fps = -1, bounds[2] = {0, 0};
    gProp->propGetDoubleN(effectProps, kOfxImageEffectPropProjectSize, 2, size);
    gProp->propGetDouble(effectProps, kOfxImageEffectPropFrameRate, 0, &fps);
    std::string timeline = "unsupported";
    if (gTimeLine && gTimeLine->getTimeBounds(effect, &bounds[0], &bounds[1]) == kOfxStatOK) timeline = fmtRange(bounds[0], bounds[1]);
    gMessage1->message(effect, kOfxMessageLog, "tester.report",
                       "render t=%g asked=%g got=%s range=%s duration=%g hidden_gain=%g project=%gx%g fps=%g timeline=%s", time,
                       time + offset, got.c_str(), range.c_str(), duration, hidden, size[0], size[1], fps, timeline.c_str());
  }
  j.src = j.constant ? nullptr : &src;
  j.dst = &dst;
  if (!dst.data || dst.depth == pixels::DepthNone) return kOfxStatErrImageFormat;

  unsigned n = 1;
  if (gThread) gThread->multiThreadNumCPUs(&n);
  if (gThread && n > 1) gThread->multiThread(threadFunc, n, &j);
  else renderRows(j, j.window.y1, j.window.y2);
  return kOfxStatOK;
}

static OfxStatus isIdentity(OfxImageEffectHandle effect, OfxPropertySetHandle inArgs, OfxPropertySetHandle outArgs) {
  Instance *d = getInstance(effect);
  double time;
  gProp->propGetDouble(inArgs, kOfxPropTime, 0, &time);
  int identity = 0, offset = 0;
  double gain = 1;
  gParam->paramGetValueAtTime(d->identity, time, &identity);
  gParam->paramGetValueAtTime(d->offset, time, &offset);
  gParam->paramGetValueAtTime(d->gain, time, &gain);
  if (!identity || gain != 1.0) return kOfxStatReplyDefault;
  gProp->propSetString(outArgs, kOfxPropName, 0, kOfxImageEffectSimpleSourceClipName);
  gProp->propSetDouble(outArgs, kOfxPropTime, 0, time + offset);
  return kOfxStatOK;
}

static OfxStatus framesNeeded(OfxImageEffectHandle effect, OfxPropertySetHandle inArgs, OfxPropertySetHandle outArgs) {
  Instance *d = getInstance(effect);
  double time;
  gProp->propGetDouble(inArgs, kOfxPropTime, 0, &time);
  int offset = 0;
  gParam->paramGetValueAtTime(d->offset, time, &offset);
  double range[2] = {time + offset, time + offset};
  gProp->propSetDoubleN(outArgs, "OfxImageClipPropFrameRange_Source", 2, range);
  return kOfxStatOK;
}

static OfxStatus instanceChanged(OfxImageEffectHandle effect, OfxPropertySetHandle inArgs) {
  Instance *d = getInstance(effect);
  char *type = nullptr, *name = nullptr, *reason = nullptr;
  gProp->propGetString(inArgs, kOfxPropType, 0, &type);
  gProp->propGetString(inArgs, kOfxPropName, 0, &name);
  gProp->propGetString(inArgs, kOfxPropChangeReason, 0, &reason);
  std::string n = name ? name : "";
  if (n == "reset" && reason && strcmp(reason, kOfxChangeUserEdited) == 0) {
    gParam->paramSetValue(d->gain, 1.0);
    setString(d->label, "reset");
    return kOfxStatOK;
  }
  if (n == "ask") {
    OfxStatus st = kOfxStatFailed;
    if (gMessage1) st = gMessage1->message(effect, kOfxMessageQuestion, "tester.ask", "Proceed?");
    setString(d->lastEvent, st == kOfxStatReplyYes ? "reply yes" : st == kOfxStatReplyNo ? "reply no" : "reply none");
    return kOfxStatOK;
  }
  if (n == "work") {
    if (!gProgress) return kOfxStatErrMissingHostFeature;
    gProgress->progressStart(effect, "Tester work");
    int k = 1;
    for (; k <= 10; k++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      if (gProgress->progressUpdate(effect, k / 10.0) != kOfxStatOK) break;
    }
    gProgress->progressEnd(effect);
    setString(d->lastEvent, k > 10 ? std::string("work done") : "work cancelled after " + std::to_string(k));
    return kOfxStatOK;
  }
  if (n == "label" && reason && strcmp(reason, kOfxChangeUserEdited) == 0) {
    if (gMessage1) gMessage1->message(effect, kOfxMessageMessage, "tester.label", "label is now set");
  }
  return kOfxStatReplyDefault;
}

// ---------------------------------------------------------------------------------------------
// Overlay

struct OverlayData {
  std::set<int> held;
  bool dragging = false;
};

static OverlayData *overlayData(OfxInteractHandle interact) {
  OfxPropertySetHandle props;
  gInteract->interactGetPropertySet(interact, &props);
  void *p = nullptr;
  gProp->propGetPointer(props, kOfxPropInstanceData, 0, &p);
  return static_cast<OverlayData *>(p);
}

static OfxImageEffectHandle overlayEffect(OfxInteractHandle interact) {
  OfxPropertySetHandle props;
  gInteract->interactGetPropertySet(interact, &props);
  void *p = nullptr;
  gProp->propGetPointer(props, kOfxPropEffectInstance, 0, &p);
  return static_cast<OfxImageEffectHandle>(p);
}

static std::string modifiers(const OverlayData *o) {
  std::string s = "[";
  bool first = true;
  for (auto m : {std::make_pair(kOfxKey_Shift_L, "shift"), std::make_pair(kOfxKey_Control_L, "ctrl"),
                 std::make_pair(kOfxKey_Alt_L, "alt")}) {
    if (o->held.count(m.first)) {
      if (!first) s += ",";
      s += m.second;
      first = false;
    }
  }
  return s + "]";
}

static std::string fmt(double v) {
  char b[32];
  snprintf(b, sizeof b, "%g", v);
  return b;
}

// Legacy OpenGL, resolved in the host's process at run time (the plug-in links no GL library).
static OfxStatus drawOpenGL(Instance *d, double time, const double pt[2], const int size[2]) {
  typedef void (*Begin)(unsigned);
  typedef void (*Void)();
  typedef void (*Vertex2d)(double, double);
  typedef void (*Color4d)(double, double, double, double);
  auto begin = (Begin)dlsym(RTLD_DEFAULT, "glBegin");
  auto end = (Void)dlsym(RTLD_DEFAULT, "glEnd");
  auto vertex = (Vertex2d)dlsym(RTLD_DEFAULT, "glVertex2d");
  auto color = (Color4d)dlsym(RTLD_DEFAULT, "glColor4d");
  if (!begin || !end || !vertex || !color) return kOfxStatReplyDefault;  // neither Draw Suite nor OpenGL
  double c[4];
  gParam->paramGetValueAtTime(d->colour, time, &c[0], &c[1], &c[2], &c[3]);
  double x1 = pt[0] - size[0] / 2.0, y1 = pt[1] - size[1] / 2.0, x2 = pt[0] + size[0] / 2.0, y2 = pt[1] + size[1] / 2.0;
  const unsigned kQuads = 0x0007, kLineLoop = 0x0002;
  color(c[0], c[1], c[2], c[3]);
  begin(kQuads);
  vertex(x1, y1);
  vertex(x2, y1);
  vertex(x2, y2);
  vertex(x1, y2);
  end();
  begin(kLineLoop);
  vertex(x1 - 2, y1 - 2);
  vertex(x2 + 2, y1 - 2);
  vertex(x2 + 2, y2 + 2);
  vertex(x1 - 2, y2 + 2);
  end();
  return kOfxStatOK;
}

OfxStatus overlayMain(const char *action, const void *handle, OfxPropertySetHandle inArgs, OfxPropertySetHandle) {
  try {
    if (shouldFail(std::string("interact:") + action, strcmp(action, kOfxActionDescribe) != 0)) {
      if (gFailThrow) throw std::runtime_error(std::string("tester: injected failure in interact ") + action);
      return kOfxStatFailed;
    }
    OfxInteractHandle interact = (OfxInteractHandle)handle;
    if (strcmp(action, kOfxActionDescribe) == 0) return kOfxStatOK;
    if (strcmp(action, kOfxActionCreateInstance) == 0) {
      OfxPropertySetHandle props;
      gInteract->interactGetPropertySet(interact, &props);
      gProp->propSetPointer(props, kOfxPropInstanceData, 0, new OverlayData);
      return kOfxStatOK;
    }
    if (strcmp(action, kOfxActionDestroyInstance) == 0) {
      delete overlayData(interact);
      return kOfxStatOK;
    }
    OverlayData *o = overlayData(interact);
    OfxImageEffectHandle effect = overlayEffect(interact);
    Instance *d = effect ? getInstance(effect) : nullptr;
    if (!o || !d) return kOfxStatErrBadHandle;
    double time = 0;
    gProp->propGetDouble(inArgs, kOfxPropTime, 0, &time);

    if (strcmp(action, kOfxInteractActionDraw) == 0) {
      void *ctx = nullptr;
      gProp->propGetPointer(inArgs, kOfxInteractPropDrawContext, 0, &ctx);
      double pt[2];
      int size[2];
      gParam->paramGetValueAtTime(d->point, time, &pt[0], &pt[1]);
      gParam->paramGetValueAtTime(d->size, time, &size[0], &size[1]);
      if (!gDraw || !ctx) return drawOpenGL(d, time, pt, size);
      OfxDrawContextHandle dc = (OfxDrawContextHandle)ctx;
      OfxRGBAColourF c;
      gDraw->getColour(dc, o->dragging ? kOfxStandardColourOverlayActive : kOfxStandardColourOverlayDeselected, &c);
      gDraw->setColour(dc, &c);
      gDraw->setLineWidth(dc, 1.5f);
      OfxPointD r[2] = {{pt[0] - size[0] / 2.0, pt[1] - size[1] / 2.0}, {pt[0] + size[0] / 2.0, pt[1] + size[1] / 2.0}};
      gDraw->draw(dc, kOfxDrawPrimitiveRectangle, r, 2);
      const char *label = nullptr;
      gParam->paramGetValueAtTime(d->label, time, &label);
      OfxPointD at = {pt[0], pt[1] + size[1]};
      gDraw->drawText(dc, label ? label : "", &at, kOfxDrawTextAlignmentLeft);
      return kOfxStatOK;
    }
    bool down = strcmp(action, kOfxInteractActionPenDown) == 0, motion = strcmp(action, kOfxInteractActionPenMotion) == 0,
         up = strcmp(action, kOfxInteractActionPenUp) == 0;
    if (down || motion || up) {
      double pos[2] = {0, 0}, pressure = 0;
      gProp->propGetDoubleN(inArgs, kOfxInteractPropPenPosition, 2, pos);
      gProp->propGetDouble(inArgs, kOfxInteractPropPenPressure, 0, &pressure);
      if (motion && !o->dragging) return kOfxStatReplyDefault;  // hover: not ours
      if (down) {
        o->dragging = true;
        int n = 0;
        gParam->paramGetValue(d->penDowns, &n);
        gParam->paramSetValue(d->penDowns, n + 1);
      }
      if (up) o->dragging = false;
      if (down || motion) gParam->paramSetValue(d->point, pos[0], pos[1]);
      setString(d->lastEvent, std::string("pen ") + (down ? "down " : motion ? "motion " : "up ") + fmt(pos[0]) + " " +
                                  fmt(pos[1]) + " " + modifiers(o) + " t=" + fmt(time));
      gInteract->interactRedraw(interact);
      return kOfxStatOK;
    }
    bool kdown = strcmp(action, kOfxInteractActionKeyDown) == 0, kup = strcmp(action, kOfxInteractActionKeyUp) == 0;
    if (kdown || kup) {
      int key = 0;
      gProp->propGetInt(inArgs, kOfxPropKeySym, 0, &key);
      if (kdown) o->held.insert(key);
      else o->held.erase(key);
      bool modifier = key == kOfxKey_Shift_L || key == kOfxKey_Control_L || key == kOfxKey_Alt_L;
      if (!modifier) {
        char *str = nullptr;
        gProp->propGetString(inArgs, kOfxPropKeyString, 0, &str);
        setString(d->lastEvent, std::string("key ") + (kdown ? "down " : "up ") + std::to_string(key) + " '" +
                                    (str ? str : "") + "' " + modifiers(o));
        return kOfxStatOK;
      }
      return kOfxStatReplyDefault;  // modifiers are tracked, not consumed
    }
    return kOfxStatReplyDefault;
  } catch (std::exception &) {
    if (gFailThrow) throw;
    return kOfxStatFailed;
  }
}

// ---------------------------------------------------------------------------------------------
// Main entry

static OfxStatus onLoad() {
  readFailures();
  if (!gHost) return kOfxStatErrMissingHostFeature;
  gEffect = (OfxImageEffectSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxImageEffectSuite, 1);
  gProp = (OfxPropertySuiteV1 *)gHost->fetchSuite(gHost->host, kOfxPropertySuite, 1);
  gParam = (OfxParameterSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxParameterSuite, 1);
  gThread = (OfxMultiThreadSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxMultiThreadSuite, 1);
  gMessage2 = (OfxMessageSuiteV2 *)gHost->fetchSuite(gHost->host, kOfxMessageSuite, 2);
  gMessage1 = (OfxMessageSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxMessageSuite, 1);
  gProgress = (OfxProgressSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxProgressSuite, 1);
  gInteract = (OfxInteractSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxInteractSuite, 1);
  gDraw = (OfxDrawSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxDrawSuite, 1);
  gTimeLine = (OfxTimeLineSuiteV1 *)gHost->fetchSuite(gHost->host, kOfxTimeLineSuite, 1);
  if (!gEffect || !gProp || !gParam || !gInteract) return kOfxStatErrMissingHostFeature;
  return kOfxStatOK;
}

static OfxStatus mainEntry(const char *action, const void *handle, OfxPropertySetHandle inArgs, OfxPropertySetHandle outArgs) {
  try {
    bool isLoad = strcmp(action, kOfxActionLoad) == 0;
    if (isLoad) readFailures();
    maybeCrash(action);
    static const std::set<std::string> lifecycle = {kOfxActionLoad, kOfxActionUnload, kOfxActionDescribe,
                                                    kOfxImageEffectActionDescribeInContext, kOfxActionCreateInstance,
                                                    kOfxActionDestroyInstance};
    if (shouldFail(action, !lifecycle.count(action))) {
      if (gFailThrow) throw std::runtime_error(std::string("tester: injected failure in ") + action);
      return kOfxStatFailed;
    }
    OfxImageEffectHandle effect = (OfxImageEffectHandle)handle;
    if (isLoad) return onLoad();
    if (strcmp(action, kOfxActionDescribe) == 0) return describe(effect);
    if (strcmp(action, kOfxImageEffectActionDescribeInContext) == 0) return describeInContext(effect, inArgs);
    if (strcmp(action, kOfxActionCreateInstance) == 0) return createInstance(effect);
    if (strcmp(action, kOfxActionDestroyInstance) == 0) return destroyInstance(effect);
    if (strcmp(action, kOfxImageEffectActionRender) == 0) return render(effect, inArgs);
    if (strcmp(action, kOfxImageEffectActionIsIdentity) == 0) return isIdentity(effect, inArgs, outArgs);
    if (strcmp(action, kOfxImageEffectActionGetFramesNeeded) == 0) return framesNeeded(effect, inArgs, outArgs);
    if (strcmp(action, kOfxActionInstanceChanged) == 0) return instanceChanged(effect, inArgs);
    return kOfxStatReplyDefault;
  } catch (std::bad_alloc &) {
    return kOfxStatErrMemory;
  } catch (std::exception &) {
    if (gFailThrow) throw;
    return kOfxStatErrUnknown;
  }
}

static void setHost(OfxHost *h) { gHost = h; }

static OfxPlugin gPlugin = {kOfxImageEffectPluginApi, 1, "net.sam2rotoscope.test.Tester", 1, 0, setHost, mainEntry};

extern "C" {
EXPORT OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &gPlugin : nullptr; }
EXPORT int OfxGetNumberOfPlugins(void) { return 1; }
}

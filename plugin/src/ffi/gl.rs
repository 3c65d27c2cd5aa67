//! Legacy OpenGL for overlays in hosts without the Draw Suite (before OpenFX 1.5 an overlay's draw
//! action runs with the host's OpenGL context current, and draws with OpenGL).
//!
//! The entry points are looked up at run time in the host's process (`dlsym(RTLD_DEFAULT)`), never
//! linked: an OpenGL host has its GL library loaded, and a host without one must still load this
//! binary. Only fixed-function calls that every compatibility context has (OpenGL 1.1).

use std::ffi::{CStr, c_void};

use once_cell::sync::OnceCell;

use crate::pen::StrokeKind;

// OpenGL 1.1 enumerants (GL/gl.h).
const GL_LINES: u32 = 0x0001;
const GL_LINE_LOOP: u32 = 0x0002;
const GL_POLYGON: u32 = 0x0009;
const GL_BLEND: u32 = 0x0BE2;
const GL_LINE_STIPPLE: u32 = 0x0B24;
const GL_LINE_SMOOTH: u32 = 0x0B20;
const GL_SRC_ALPHA: u32 = 0x0302;
const GL_ONE_MINUS_SRC_ALPHA: u32 = 0x0303;
const GL_CURRENT_BIT: u32 = 0x0000_0001;
const GL_LINE_BIT: u32 = 0x0000_0004;
const GL_ENABLE_BIT: u32 = 0x0000_2000;
const GL_COLOR_BUFFER_BIT: u32 = 0x0000_4000;

/// The fixed-function entry points an overlay needs.
#[derive(Debug, Clone, Copy)]
pub struct Gl {
    begin: unsafe extern "C" fn(u32),
    end: unsafe extern "C" fn(),
    vertex2d: unsafe extern "C" fn(f64, f64),
    color4f: unsafe extern "C" fn(f32, f32, f32, f32),
    line_width: unsafe extern "C" fn(f32),
    line_stipple: unsafe extern "C" fn(i32, u16),
    enable: unsafe extern "C" fn(u32),
    disable: unsafe extern "C" fn(u32),
    blend_func: unsafe extern "C" fn(u32, u32),
    push_attrib: unsafe extern "C" fn(u32),
    pop_attrib: unsafe extern "C" fn(),
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: RTLD_DEFAULT searches the global scope of the process; `name` is a NUL-terminated
    // string that outlives the call. dlsym only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

macro_rules! gl_fn {
    ($name:literal, $ty:ty) => {{
        let p = symbol($name)?;
        // SAFETY: `p` is the address of the OpenGL 1.1 function `$name`, whose C signature is
        // `$ty` (GL/gl.h: GLenum/GLbitfield are u32, GLint i32, GLushort u16, GLfloat f32,
        // GLdouble f64); a data pointer and a function pointer have one size on the platforms
        // OpenFX hosts run on.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

static GL: OnceCell<Gl> = OnceCell::new();

impl Gl {
    /// The host's OpenGL, if its process has one loaded (looked up once it is found).
    pub fn get() -> Option<&'static Gl> {
        GL.get_or_try_init(|| Gl::load().ok_or(())).ok()
    }

    fn load() -> Option<Gl> {
        Some(Gl {
            begin: gl_fn!(c"glBegin", unsafe extern "C" fn(u32)),
            end: gl_fn!(c"glEnd", unsafe extern "C" fn()),
            vertex2d: gl_fn!(c"glVertex2d", unsafe extern "C" fn(f64, f64)),
            color4f: gl_fn!(c"glColor4f", unsafe extern "C" fn(f32, f32, f32, f32)),
            line_width: gl_fn!(c"glLineWidth", unsafe extern "C" fn(f32)),
            line_stipple: gl_fn!(c"glLineStipple", unsafe extern "C" fn(i32, u16)),
            enable: gl_fn!(c"glEnable", unsafe extern "C" fn(u32)),
            disable: gl_fn!(c"glDisable", unsafe extern "C" fn(u32)),
            blend_func: gl_fn!(c"glBlendFunc", unsafe extern "C" fn(u32, u32)),
            push_attrib: gl_fn!(c"glPushAttrib", unsafe extern "C" fn(u32)),
            pop_attrib: gl_fn!(c"glPopAttrib", unsafe extern "C" fn()),
        })
    }

    /// Draws a stroke in the current context: `points` in canonical coordinates (the host's
    /// projection maps them to the viewer). The host's GL state is saved and restored around it.
    pub fn stroke(
        &self,
        kind: StrokeKind,
        colour: [f32; 4],
        width: f32,
        dashed: bool,
        points: &[[f64; 2]],
    ) {
        let primitive = match kind {
            StrokeKind::Lines => GL_LINES,
            StrokeKind::LineLoop => GL_LINE_LOOP,
            StrokeKind::Polygon => GL_POLYGON,
        };
        // SAFETY: the draw action runs on the thread where the host made its OpenGL context
        // current (the OpenFX overlay contract without the Draw Suite); the calls are valid
        // fixed-function calls in a compatibility context, balanced (push/pop, begin/end), with
        // only vertex and colour calls between begin and end.
        unsafe {
            (self.push_attrib)(GL_ENABLE_BIT | GL_LINE_BIT | GL_CURRENT_BIT | GL_COLOR_BUFFER_BIT);
            (self.enable)(GL_BLEND);
            (self.blend_func)(GL_SRC_ALPHA, GL_ONE_MINUS_SRC_ALPHA);
            (self.disable)(GL_LINE_SMOOTH);
            if dashed {
                (self.enable)(GL_LINE_STIPPLE);
                (self.line_stipple)(1, 0x0F0F);
            } else {
                (self.disable)(GL_LINE_STIPPLE);
            }
            (self.line_width)(width.max(1.0));
            (self.color4f)(colour[0], colour[1], colour[2], colour[3]);
            (self.begin)(primitive);
            for p in points {
                (self.vertex2d)(p[0], p[1]);
            }
            (self.end)();
            (self.pop_attrib)();
        }
    }
}

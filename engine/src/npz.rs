//! Streamed `.npz` files: what `np.savez_compressed` writes — a zip of deflated `.npy` files
//! (format version 1.0) — written array by array and each array in pieces, so that a long
//! propagation over a 4K clip holds one frame's mask at a time rather than all of them
//! (ndarray-npy's `NpzWriter` wants each whole array in memory).
//! [`Trace::read_step`](crate::trace::Trace::read_step) and NumPy read the files alike.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A failure to write an `.npz` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpzError {
    #[error("Could not write {path}: {source}.")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("Could not write {path}: {message}.")]
    Zip { path: PathBuf, message: String },
}

/// The element types the trace format uses, with NumPy's `descr` for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<i8`, little-endian 64-bit integers.
    I64,
    /// `<f4`, little-endian 32-bit floats.
    F32,
    /// `|b1`, one byte per boolean (0 or 1).
    Bool,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::I64 => "<i8",
            Dtype::F32 => "<f4",
            Dtype::Bool => "|b1",
        }
    }

    fn size(self) -> u64 {
        match self {
            Dtype::I64 => 8,
            Dtype::F32 => 4,
            Dtype::Bool => 1,
        }
    }
}

/// An `.npz` file being written; [`NpzWriter::finish`] completes it.
///
/// A writer that fails, or is dropped unfinished, abandons its file: the zip library would
/// otherwise try to finish the archive on drop and print its failure to stderr itself (a full
/// disk fails twice — once to the caller, once as `ZipWriter drop failed: …` on the terminal). An
/// abandoned file is incomplete; it lies in a staging folder that goes with it.
pub struct NpzWriter {
    path: PathBuf,
    /// `None` once finished.
    zip: Option<ZipWriter<BufWriter<Abandonable<File>>>>,
    abandoned: Arc<AtomicBool>,
}

/// A file that turns into a sink once abandoned — by its writer, or by its own first failure
/// (the zip library drops itself inside a failing `finish`, where nobody else could) — so that
/// nothing more reaches it and nothing fails again. It keeps counting positions as a file would,
/// because the zip library checks them.
struct Abandonable<W> {
    inner: W,
    abandoned: Arc<AtomicBool>,
    /// The position and the end, as far as this writer knows them.
    position: u64,
    end: u64,
}

impl<W> Abandonable<W> {
    fn new(inner: W, abandoned: Arc<AtomicBool>) -> Abandonable<W> {
        Abandonable {
            inner,
            abandoned,
            position: 0,
            end: 0,
        }
    }

    fn live(&self) -> bool {
        !self.abandoned.load(Ordering::Relaxed)
    }

    fn moved_to(&mut self, position: u64) -> u64 {
        self.position = position;
        self.end = self.end.max(position);
        position
    }

    /// A failure abandons the file.
    fn failed<T>(&self, result: io::Result<T>) -> io::Result<T> {
        result.inspect_err(|_| self.abandoned.store(true, Ordering::Relaxed))
    }
}

impl<W: Write> Write for Abandonable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if self.live() {
            let result = self.inner.write(buf);
            self.failed(result)?
        } else {
            buf.len()
        };
        self.moved_to(self.position.saturating_add(n as u64));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.live() {
            let result = self.inner.flush();
            self.failed(result)?;
        }
        Ok(())
    }
}

impl<W: Seek> Seek for Abandonable<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let position = if self.live() {
            let result = self.inner.seek(pos);
            self.failed(result)?
        } else {
            let offset = |base: u64, by: i64| base.saturating_add_signed(by);
            match pos {
                SeekFrom::Start(n) => n,
                SeekFrom::Current(by) => offset(self.position, by),
                SeekFrom::End(by) => offset(self.end, by),
            }
        };
        Ok(self.moved_to(position))
    }
}

impl std::fmt::Debug for NpzWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpzWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl NpzWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<NpzWriter, NpzError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| NpzError::Io {
            path: path.clone(),
            source,
        })?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let file = Abandonable::new(file, Arc::clone(&abandoned));
        Ok(NpzWriter {
            zip: Some(ZipWriter::new(BufWriter::new(file))),
            path,
            abandoned,
        })
    }

    fn abandon(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Adds `NAME.npy`, a C-ordered array of `dtype` and `shape`: the header, then what `body`
    /// writes, which must be exactly the array's bytes in C order.
    pub fn array(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), NpzError> {
        let bytes = shape
            .iter()
            .fold(dtype.size(), |n, &d| n.saturating_mul(d as u64));
        // Zip64 only where the entry needs it; NumPy reads both.
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(bytes >= u64::from(u32::MAX) - 1024);
        let Some(zip) = self.zip.as_mut() else {
            return Ok(()); // finished: `finish` takes the writer, so this cannot be reached
        };
        let written = zip
            .start_file(format!("{name}.npy"), options)
            .map_err(ZipFailure::from)
            .and_then(|()| {
                zip.write_all(&npy_header(dtype.descr(), shape))?;
                body(zip)?;
                Ok(())
            });
        written.map_err(|e| {
            self.abandon();
            e.at(&self.path)
        })
    }

    /// Writes the zip's directory and flushes the file.
    pub fn finish(mut self) -> Result<(), NpzError> {
        let Some(zip) = self.zip.take() else {
            return Ok(());
        };
        let finished = zip
            .finish()
            .map_err(ZipFailure::from)
            .and_then(|mut file| Ok(file.flush()?));
        finished.map_err(|e| e.at(&self.path))
    }
}

impl Drop for NpzWriter {
    fn drop(&mut self) {
        if self.zip.is_some() {
            self.abandon();
        }
    }
}

/// Why writing failed, before the path is attached.
enum ZipFailure {
    Io(io::Error),
    Zip(zip::result::ZipError),
}

impl ZipFailure {
    fn at(self, path: &Path) -> NpzError {
        let path = path.to_path_buf();
        match self {
            ZipFailure::Io(source) => NpzError::Io { path, source },
            ZipFailure::Zip(e) => NpzError::Zip {
                path,
                message: e.to_string(),
            },
        }
    }
}

impl From<io::Error> for ZipFailure {
    fn from(e: io::Error) -> Self {
        ZipFailure::Io(e)
    }
}

impl From<zip::result::ZipError> for ZipFailure {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(e) => ZipFailure::Io(e),
            other => ZipFailure::Zip(other),
        }
    }
}

/// The `.npy` header (format 1.0) of a C-ordered array; padded so that the data starts at a
/// multiple of 64 bytes, as NumPy pads it.
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    const PREAMBLE: usize = 10; // magic (6), version (2), header length (2)
    let pad = (64 - (PREAMBLE + dict.len() + 1) % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    // At most a few hundred bytes for any shape of three dimensions.
    let len = u16::try_from(dict.len()).unwrap_or(u16::MAX);
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend(len.to_le_bytes());
    header.extend(dict.bytes());
    header
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};
    use ndarray_npy::NpzReader;

    use super::*;

    #[test]
    fn npy_headers_are_numpy_s() {
        let header = npy_header("<f4", &[2, 3, 4]);
        assert_eq!(header.len() % 64, 0);
        assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
        let text = std::str::from_utf8(&header[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"));
        assert!(text.ends_with(" \n"));
        let one = npy_header("<i8", &[5]);
        assert!(
            std::str::from_utf8(&one[10..])
                .unwrap()
                .contains("'shape': (5,)")
        );
    }

    #[test]
    fn arrays_written_in_pieces_read_back_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.npz");
        let mut npz = NpzWriter::create(&path).unwrap();
        npz.array("ids", Dtype::I64, &[3], |out| {
            [4i64, -1, 9]
                .iter()
                .try_for_each(|v| out.write_all(&v.to_le_bytes()))
        })
        .unwrap();
        npz.array("values", Dtype::F32, &[2, 2], |out| {
            out.write_all(&1.5f32.to_le_bytes())?;
            out.write_all(&(-2.0f32).to_le_bytes())?;
            out.write_all(&[0.25f32, 8.0].map(f32::to_le_bytes).concat())
        })
        .unwrap();
        npz.finish().unwrap();

        let mut reader = NpzReader::new(File::open(&path).unwrap()).unwrap();
        let ids: Array1<i64> = reader.by_name("ids").unwrap();
        assert_eq!(ids.to_vec(), [4, -1, 9]);
        let values: Array2<f32> = reader.by_name("values").unwrap();
        assert_eq!(values.into_raw_vec_and_offset().0, [1.5, -2.0, 0.25, 8.0]);
    }

    /// A write that fails (ENOSPC) is an error naming the file; the writer is then abandoned,
    /// and dropping it neither fails nor retries the file.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_an_error_and_the_file_is_abandoned() {
        let mut npz = NpzWriter::create("/dev/full").unwrap();
        let big = vec![0u8; 1 << 20];
        let err = npz
            .array("mask", Dtype::Bool, &[big.len()], |out| out.write_all(&big))
            .unwrap_err();
        assert!(
            matches!(&err, NpzError::Io { source, .. } if source.raw_os_error() == Some(28)),
            "{err}"
        );
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert!(npz.abandoned.load(Ordering::Relaxed));
        // Further writes go nowhere and do not fail.
        npz.array("frame", Dtype::I64, &[1], |out| out.write_all(&[0; 8]))
            .unwrap();
        drop(npz);
    }

    #[test]
    fn a_file_that_cannot_be_created_is_a_sentence() {
        let tmp = tempfile::tempdir().unwrap();
        let err = NpzWriter::create(tmp.path().join("no/such/a.npz")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("Could not write ") && text.ends_with('.'),
            "{text}"
        );
        assert!(text.contains("a.npz"), "{text}");
    }
}

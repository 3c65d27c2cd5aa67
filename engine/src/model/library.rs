//! Checks that the ONNX Runtime library file is whole before it is loaded.
//!
//! The dynamic loader maps a shared library without reading it, so a copy cut short (an
//! interrupted download, a full disk) loads "successfully" and then kills the process with SIGBUS
//! the first time code in the missing part runs — no message, in the middle of a host. Two checks
//! run before `ort::init_from`, so that such a copy is a sentence instead:
//!
//! 1. **The record**, when there is one: `<library>.record.json` beside the library (see
//!    [`RECORD_SUFFIX`]), written by `bundle/fetch-onnxruntime.sh` and `bundle/build-bundle.sh`,
//!    gives the file's size and SHA-256. Both are compared (the hash takes about 0.1 s).
//! 2. **The ELF structure**, always on Linux: the file must be an ELF file at least as long as its
//!    headers say — the section table, which linkers put at the end, and every segment the loader
//!    maps. This catches any truncation of a library that has no record (a user's
//!    `SAM2_ORT_DYLIB`) in microseconds.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, FileKind, Result};
use crate::exchange::Envelope;

/// Appended to the library's file name to name its record.
pub const RECORD_SUFFIX: &str = ".record.json";

/// The `format` of a library record.
pub const RECORD_FORMAT: &str = "sam2-rotoscope-library-record";

const ENVELOPE: Envelope = Envelope {
    kind: FileKind::LibraryRecord,
    format: RECORD_FORMAT,
    version: 1,
};

/// What a record says about the library beside it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LibraryRecord {
    /// The library's file name (not a path), which must be the record's own name less the suffix.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// How a library file is damaged; part of [`Error::RuntimeDamaged`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryDamage {
    #[error("it is {found} bytes, but its record {record} says {expected}")]
    Size {
        record: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("its SHA-256 is {actual}, but its record {record} says {expected}")]
    Hash {
        record: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("it is not an ELF shared library (it does not start with the ELF magic number)")]
    NotElf,
    #[error(
        "it is {found} bytes, but its ELF headers need at least {needed}: the file was cut short"
    )]
    Truncated { needed: u64, found: u64 },
    #[error("its ELF header is malformed ({problem})")]
    Malformed { problem: &'static str },
}

/// The record's path for `library`.
pub fn record_path(library: &Path) -> PathBuf {
    let mut name = library.file_name().unwrap_or_default().to_os_string();
    name.push(RECORD_SUFFIX);
    library.with_file_name(name)
}

/// Checks `library` (a resolved path, not a symlink to it) against its record if there is one,
/// and its ELF structure on Linux. See the module documentation.
pub fn verify_library(library: &Path) -> Result<()> {
    let damaged = |problem| Error::RuntimeDamaged {
        path: library.to_path_buf(),
        problem,
    };
    let found = std::fs::metadata(library)
        .map_err(|e| Error::io(library, e))?
        .len();
    let record_file = record_path(library);
    if record_file.is_file() {
        let (record, _): (LibraryRecord, _) = ENVELOPE.read(&record_file)?;
        let own_name = library.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if record.file != own_name {
            return Err(Error::Parse {
                kind: FileKind::LibraryRecord,
                path: record_file,
                message: format!(
                    "it describes \"{}\", not the library \"{own_name}\" beside it",
                    record.file
                ),
            });
        }
        if record.bytes != found {
            return Err(damaged(LibraryDamage::Size {
                record: record_file,
                expected: record.bytes,
                found,
            }));
        }
        let actual = sha256_file(library)?;
        if !actual.eq_ignore_ascii_case(&record.sha256) {
            return Err(damaged(LibraryDamage::Hash {
                record: record_file,
                expected: record.sha256,
                actual,
            }));
        }
    }
    check_elf(library, found).map_err(damaged)
}

/// SHA-256 of a file as lowercase hex, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(buffer.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The ELF check: on Linux every library must be ELF; elsewhere (Mach-O, PE) only files that
/// say they are ELF are checked.
fn check_elf(library: &Path, found: u64) -> std::result::Result<(), LibraryDamage> {
    let Ok(mut file) = std::fs::File::open(library) else {
        // Unreadable files are the loader's to report; this check only looks for damage.
        return Ok(());
    };
    let mut header = Vec::with_capacity(64);
    let _ = file.by_ref().take(64).read_to_end(&mut header);
    if header.get(..4) != Some(b"\x7fELF".as_slice()) {
        return if cfg!(target_os = "linux") {
            if (header.len() as u64) < 4 {
                Err(LibraryDamage::Truncated { needed: 64, found })
            } else {
                Err(LibraryDamage::NotElf)
            }
        } else {
            Ok(())
        };
    }
    let elf =
        Elf::parse_header(&header).ok_or(LibraryDamage::Truncated { needed: 64, found })??;
    let mut needed = elf.section_table_end().max(elf.program_table_end());
    if needed > found {
        return Err(LibraryDamage::Truncated { needed, found });
    }
    // The segments the loader maps: each must lie inside the file.
    let mut table = vec![0u8; usize::from(elf.phentsize) * usize::from(elf.phnum)];
    use std::io::{Seek, SeekFrom};
    if file.seek(SeekFrom::Start(elf.phoff)).is_ok() && file.read_exact(&mut table).is_ok() {
        for entry in table.chunks_exact(usize::from(elf.phentsize.max(1))) {
            needed = needed.max(elf.segment_end(entry).unwrap_or(0));
        }
    }
    if needed > found {
        return Err(LibraryDamage::Truncated { needed, found });
    }
    Ok(())
}

/// The few fields of an ELF header the check needs.
#[derive(Debug)]
struct Elf {
    wide: bool,
    little: bool,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
}

impl Elf {
    /// `None` when the header is shorter than its class needs; `Some(Err)` when it is malformed.
    fn parse_header(h: &[u8]) -> Option<std::result::Result<Elf, LibraryDamage>> {
        let malformed = |problem| Some(Err(LibraryDamage::Malformed { problem }));
        let wide = match h.get(4)? {
            1 => false,
            2 => true,
            _ => return malformed("unknown class"),
        };
        let little = match h.get(5)? {
            1 => true,
            2 => false,
            _ => return malformed("unknown byte order"),
        };
        let r = Reader { bytes: h, little };
        let elf = if wide {
            Elf {
                wide,
                little,
                phoff: r.u64(0x20)?,
                shoff: r.u64(0x28)?,
                phentsize: r.u16(0x36)?,
                phnum: r.u16(0x38)?,
                shentsize: r.u16(0x3A)?,
                shnum: r.u16(0x3C)?,
            }
        } else {
            Elf {
                wide,
                little,
                phoff: u64::from(r.u32(0x1C)?),
                shoff: u64::from(r.u32(0x20)?),
                phentsize: r.u16(0x2A)?,
                phnum: r.u16(0x2C)?,
                shentsize: r.u16(0x2E)?,
                shnum: r.u16(0x30)?,
            }
        };
        let least = if wide { 56 } else { 32 };
        if elf.phnum > 0 && usize::from(elf.phentsize) < least {
            return malformed("program header entries too small");
        }
        Some(Ok(elf))
    }

    fn section_table_end(&self) -> u64 {
        if self.shoff == 0 {
            return 0;
        }
        let size = u64::from(self.shentsize) * u64::from(self.shnum);
        self.shoff.saturating_add(size)
    }

    fn program_table_end(&self) -> u64 {
        let size = u64::from(self.phentsize) * u64::from(self.phnum);
        self.phoff.saturating_add(size)
    }

    /// `p_offset + p_filesz` of one program header entry.
    fn segment_end(&self, entry: &[u8]) -> Option<u64> {
        let r = Reader {
            bytes: entry,
            little: self.little,
        };
        let (offset, size) = if self.wide {
            (r.u64(8)?, r.u64(32)?)
        } else {
            (u64::from(r.u32(4)?), u64::from(r.u32(16)?))
        };
        Some(offset.saturating_add(size))
    }
}

/// Fixed-width integers at byte offsets, in the file's byte order.
struct Reader<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at + N)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.array(at)?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.array(at)?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.array(at)?;
        Some(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::runtime::checkout_library_path;

    /// The checkout's library, resolved; `None` (test skipped) when it has not been fetched.
    fn library() -> Option<PathBuf> {
        checkout_library_path().canonicalize().ok()
    }

    fn copy_of(library: &Path, dir: &Path, keep: Option<u64>) -> PathBuf {
        let bytes = std::fs::read(library).unwrap();
        let keep = keep.map_or(bytes.len(), |k| k as usize);
        let copy = dir.join(library.file_name().unwrap_or_default());
        std::fs::write(&copy, &bytes[..keep]).unwrap();
        copy
    }

    fn write_record(library: &Path, bytes: u64, sha256: &str) {
        let name = library.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let json = format!(
            r#"{{"format": "{RECORD_FORMAT}", "version": 1, "file": "{name}", "bytes": {bytes}, "sha256": "{sha256}"}}"#
        );
        std::fs::write(record_path(library), json).unwrap();
    }

    #[test]
    fn a_whole_library_passes_with_and_without_a_record() {
        let Some(library) = library() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let copy = copy_of(&library, dir.path(), None);
        verify_library(&copy).unwrap();
        let len = std::fs::metadata(&copy).unwrap().len();
        write_record(&copy, len, &sha256_file(&copy).unwrap());
        verify_library(&copy).unwrap();
    }

    #[test]
    fn a_truncated_library_without_a_record_is_caught_by_its_elf_headers() {
        let Some(library) = library() else {
            return;
        };
        let full = std::fs::metadata(&library).unwrap().len();
        let dir = tempfile::tempdir().unwrap();
        for keep in [0, 3, 40, 4096, full / 2, full - 1] {
            let copy = copy_of(&library, dir.path(), Some(keep));
            let err = verify_library(&copy);
            let Err(Error::RuntimeDamaged { problem, .. }) = &err else {
                panic!("{keep} bytes: expected RuntimeDamaged, got {err:?}");
            };
            assert!(
                matches!(problem, LibraryDamage::Truncated { found, .. } if *found == keep),
                "{keep} bytes: {problem:?}"
            );
        }
    }

    #[test]
    fn a_record_catches_a_short_or_changed_library() {
        let Some(library) = library() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let copy = copy_of(&library, dir.path(), None);
        let len = std::fs::metadata(&copy).unwrap().len();
        let sha = sha256_file(&copy).unwrap();
        // Bigger than the file: the record says it was cut short.
        write_record(&copy, len + 1, &sha);
        let err = verify_library(&copy);
        assert!(
            matches!(&err, Err(Error::RuntimeDamaged { problem: LibraryDamage::Size { expected, found, .. }, .. })
                if *expected == len + 1 && *found == len),
            "{err:?}"
        );
        let text = err.map(|_| ()).unwrap_err().to_string();
        assert!(text.contains(&copy.display().to_string()), "{text}");
        assert!(text.contains("fetch-onnxruntime.sh"), "{text}");
        // Same size, one byte changed in the middle (where the ELF check cannot see it).
        write_record(&copy, len, &sha);
        let mut bytes = std::fs::read(&copy).unwrap();
        bytes[len as usize / 2] ^= 0x55;
        std::fs::write(&copy, &bytes).unwrap();
        let err = verify_library(&copy);
        assert!(
            matches!(
                &err,
                Err(Error::RuntimeDamaged {
                    problem: LibraryDamage::Hash { .. },
                    ..
                })
            ),
            "{err:?}"
        );
        // A record of another file is an error in the record.
        let other = dir.path().join("libother.so");
        std::fs::copy(&copy, &other).unwrap();
        std::fs::copy(record_path(&copy), record_path(&other)).unwrap();
        let err = verify_library(&other);
        assert!(
            matches!(
                &err,
                Err(Error::Parse {
                    kind: FileKind::LibraryRecord,
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_that_is_not_elf_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libonnxruntime.so");
        std::fs::write(&path, b"<html>404 Not Found</html>").unwrap();
        let err = verify_library(&path);
        if cfg!(target_os = "linux") {
            assert!(
                matches!(
                    &err,
                    Err(Error::RuntimeDamaged {
                        problem: LibraryDamage::NotElf,
                        ..
                    })
                ),
                "{err:?}"
            );
        }
    }
}

//! The envelope every exchange-format JSON file shares: `format` and `version`.
//!
//! The envelope is checked before the body is parsed, so that handing a trace to the model loader
//! says "this is not a model manifest" instead of listing the manifest fields the trace lacks, and
//! a file from a newer exporter says "update" instead of failing on a field this build has never
//! heard of.
//!
//! A key written twice in one object is refused: serde_json would silently keep the last value, so
//! a hand-edited script with two `"frame"` keys would run a different interaction than its author
//! reads.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, FileKind, Result};

/// The `format` and `version` a reader of one kind of file accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope {
    pub kind: FileKind,
    pub format: &'static str,
    pub version: u64,
}

#[derive(Deserialize)]
struct RawEnvelope {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

impl Envelope {
    /// Reads `path`, checks its envelope and parses the body. Also returns the raw bytes, because
    /// a manifest's hash is taken over the bytes as written, not over a re-serialization.
    pub(crate) fn read<T: DeserializeOwned>(&self, path: &Path) -> Result<(T, Vec<u8>)> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let value = self.parse(path, &bytes)?;
        Ok((value, bytes))
    }

    /// Checks the envelope of `bytes` (the content of `path`) and parses the body.
    pub(crate) fn parse<T: DeserializeOwned>(&self, path: &Path, bytes: &[u8]) -> Result<T> {
        let parse_error = |message: String| Error::Parse {
            kind: self.kind,
            path: path.to_path_buf(),
            message,
        };
        serde_json::from_slice::<UniqueKeys>(bytes).map_err(|e| parse_error(e.to_string()))?;
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|e| parse_error(e.to_string()))?;
        match raw.format {
            None => return Err(parse_error("it has no \"format\" field".into())),
            Some(serde_json::Value::String(found)) if found == self.format => {}
            Some(found) => {
                let found = match found {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                return Err(Error::UnknownFormat {
                    kind: self.kind,
                    path: path.to_path_buf(),
                    found,
                    expected: self.format,
                });
            }
        }
        let version = match raw.version {
            None => return Err(parse_error("it has no \"version\" field".into())),
            Some(v) => v.as_u64().filter(|v| *v >= 1).ok_or_else(|| {
                parse_error(format!(
                    "its \"version\" is {v}, which is not a version number (1, 2, …)"
                ))
            })?,
        };
        if version > self.version {
            return Err(Error::NewerVersion {
                kind: self.kind,
                path: path.to_path_buf(),
                found: version,
                supported: self.version,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| parse_error(e.to_string()))
    }
}

/// A JSON value walked only to check that no object repeats a key; nothing is kept.
///
/// A separate pass over the bytes (rather than a `Value` handed to `from_value`) keeps serde_json's
/// line and column in every body error, which the reader of a hand-edited file needs.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!(
                    "the key \"{key}\" appears twice in one object; remove one of them"
                )));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: Envelope = Envelope {
        kind: FileKind::Trace,
        format: "sam2-rotoscope-trace",
        version: 1,
    };

    #[derive(Debug, Deserialize)]
    struct Body {
        value: u32,
    }

    fn parse(json: &str) -> Result<Body> {
        ENV.parse(Path::new("/x/trace.json"), json.as_bytes())
    }

    #[test]
    fn accepts_current_version() -> Result<()> {
        let body = parse(r#"{"format": "sam2-rotoscope-trace", "version": 1, "value": 3}"#)?;
        assert_eq!(body.value, 3);
        Ok(())
    }

    #[test]
    fn refuses_other_format_before_parsing_the_body() {
        let err = parse(r#"{"format": "sam2-rotoscope-model", "version": 1}"#).map(|_| ());
        let Err(err @ Error::UnknownFormat { .. }) = err else {
            panic!("expected UnknownFormat, got {err:?}");
        };
        let text = err.to_string();
        assert!(text.contains("/x/trace.json"), "{text}");
        assert!(text.contains("\"sam2-rotoscope-model\""), "{text}");
        assert!(text.contains("\"sam2-rotoscope-trace\""), "{text}");
    }

    #[test]
    fn refuses_newer_version() {
        let err =
            parse(r#"{"format": "sam2-rotoscope-trace", "version": 2, "value": 3}"#).map(|_| ());
        let Err(
            err @ Error::NewerVersion {
                found: 2,
                supported: 1,
                ..
            },
        ) = err
        else {
            panic!("expected NewerVersion, got {err:?}");
        };
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn refuses_missing_or_bad_version() {
        for json in [
            r#"{"format": "sam2-rotoscope-trace", "value": 3}"#,
            r#"{"format": "sam2-rotoscope-trace", "version": "1", "value": 3}"#,
            r#"{"format": "sam2-rotoscope-trace", "version": 0, "value": 3}"#,
        ] {
            let err = parse(json).map(|_| ());
            assert!(matches!(err, Err(Error::Parse { .. })), "{json}: {err:?}");
        }
    }

    #[test]
    fn refuses_a_key_written_twice() {
        for json in [
            r#"{"format": "sam2-rotoscope-trace", "version": 1, "value": 3, "value": 4}"#,
            r#"{"format": "sam2-rotoscope-trace", "version": 1, "version": 1, "value": 3}"#,
            "{\"format\": \"sam2-rotoscope-trace\", \"version\": 1, \"value\": 3,\n \"extra\": [{\"a\": 1, \"b\": {\"value\": 1, \"value\": 2}}]}",
        ] {
            let err = parse(json).map(|_| ());
            let Err(err @ Error::Parse { .. }) = err else {
                panic!("{json}: expected Parse, got {err:?}");
            };
            let text = err.to_string();
            assert!(text.contains("/x/trace.json"), "{text}");
            assert!(text.contains("appears twice"), "{text}");
            assert!(
                text.contains("\"value\"") || text.contains("\"version\""),
                "{text}"
            );
        }
        // The same key in two different objects is fine.
        let json =
            r#"{"format": "sam2-rotoscope-trace", "version": 1, "value": 3, "x": {"value": 1}}"#;
        let body = parse(json).map(|b| b.value);
        assert!(matches!(body, Ok(3)), "{body:?}");
    }

    #[test]
    fn body_errors_keep_line_numbers() {
        let err = parse("{\"format\": \"sam2-rotoscope-trace\",\n \"version\": 1}").map(|_| ());
        let Err(err) = err else {
            panic!("a missing field must be an error")
        };
        let text = err.to_string();
        assert!(
            text.contains("missing field `value`") && text.contains("line 2"),
            "{text}"
        );
    }
}

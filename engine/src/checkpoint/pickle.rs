//! The part of Python's pickle format that `torch.save` writes for a state dict.
//!
//! A checkpoint's `data.pkl` is a program for Python's unpickler; running it in general means
//! importing and calling arbitrary Python. This reader runs only the opcodes `torch.save` emits
//! for nested dicts, lists and tuples of tensors and plain values, and calls only the few
//! constructors a state dict needs (`OrderedDict`, `_rebuild_tensor_v2`, `_rebuild_parameter`).
//! Anything else is refused with the opcode or global it met, so a file that is not a state dict
//! becomes a sentence rather than a guess.

use std::collections::HashMap;

/// The element type of a storage, from its class name (`torch.FloatStorage`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    Float32,
    /// Any other class; kept by name so the message can say what the checkpoint holds.
    Other(&'static str),
}

impl StorageDtype {
    fn from_class(name: &str) -> StorageDtype {
        match name {
            "FloatStorage" => StorageDtype::Float32,
            "HalfStorage" => StorageDtype::Other("float16"),
            "BFloat16Storage" => StorageDtype::Other("bfloat16"),
            "DoubleStorage" => StorageDtype::Other("float64"),
            "LongStorage" => StorageDtype::Other("int64"),
            "IntStorage" => StorageDtype::Other("int32"),
            "ByteStorage" => StorageDtype::Other("uint8"),
            "BoolStorage" => StorageDtype::Other("bool"),
            _ => StorageDtype::Other("an unknown type"),
        }
    }

    /// The name as PyTorch prints it (`torch.float32`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            StorageDtype::Float32 => "float32",
            StorageDtype::Other(n) => n,
        }
    }
}

/// A tensor as the pickle describes it: a view into one storage of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The storage's name in the archive (`data/<key>`).
    pub storage: String,
    pub dtype: StorageDtype,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// A value of the pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Keys and values in insertion order (an `OrderedDict` is a dict here).
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage {
        key: String,
        dtype: StorageDtype,
    },
    Tensor(TensorRef),
}

/// Why a pickle was refused, as a phrase ("it calls os.system", "it ends before STOP").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

type Parsed<T> = Result<T, Refused>;

fn refuse<T>(message: impl Into<String>) -> Parsed<T> {
    Err(Refused(message.into()))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => refuse("it ends in the middle of an instruction"),
        }
    }
    fn u8(&mut self) -> Parsed<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn array<const N: usize>(&mut self) -> Parsed<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Parsed<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Parsed<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn line(&mut self) -> Parsed<String> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return refuse("it ends in the middle of a name");
        };
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.pos += 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> Parsed<String> {
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => refuse("it holds a string that is not UTF-8"),
        }
    }
}

fn usize_of(v: &Value, what: &str) -> Parsed<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => refuse(format!("a tensor's {what} is not a non-negative integer")),
    }
}

fn usizes_of(v: &Value, what: &str) -> Parsed<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|i| usize_of(i, what)).collect()
        }
        _ => refuse(format!("a tensor's {what} is not a tuple")),
    }
}

/// Calls one of the allowed constructors.
fn reduce(callable: Value, args: Value) -> Parsed<Value> {
    let Value::Global(module, name) = callable else {
        return refuse("it calls something that is not a named function");
    };
    let Value::Tuple(args) = args else {
        return refuse(format!(
            "it calls {module}.{name} without an argument tuple"
        ));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(storage), Some(offset), Some(shape), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                return refuse("it rebuilds a tensor with too few arguments");
            };
            let Value::Storage { key, dtype } = storage else {
                return refuse("it rebuilds a tensor from something that is not a storage");
            };
            let shape = usizes_of(shape, "shape")?;
            let stride = usizes_of(stride, "stride")?;
            if shape.len() != stride.len() {
                return refuse("a tensor's shape and stride differ in length");
            }
            Ok(Value::Tensor(TensorRef {
                storage: key.clone(),
                dtype: *dtype,
                offset: usize_of(offset, "offset")?,
                shape,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => refuse("it rebuilds a parameter from something that is not a tensor"),
        },
        _ => refuse(format!(
            "it calls {module}.{name}, which a PyTorch state dict does not need"
        )),
    }
}

fn persistent(pid: Value) -> Parsed<Value> {
    let Value::Tuple(items) = pid else {
        return refuse("it refers to an external object in a form torch.save does not write");
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            _location,
            ..,
        ] if kind == "storage" => Ok(Value::Storage {
            key: key.clone(),
            dtype: StorageDtype::from_class(class),
        }),
        _ => refuse("it refers to an external object that is not a tensor storage"),
    }
}

/// Runs the pickle and returns its value.
pub fn parse(bytes: &[u8]) -> Parsed<Value> {
    let mut r = Reader { bytes, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| -> Parsed<Value> {
        stack
            .pop()
            .ok_or_else(|| Refused("it takes a value from an empty stack".into()))
    };
    let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Parsed<Vec<Value>> {
        let Some(m) = marks.pop() else {
            return refuse("it closes a group it never opened");
        };
        if m > stack.len() {
            return refuse("it closes a group past the start of the stack");
        }
        Ok(stack.split_off(m))
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return refuse(format!("it uses pickle protocol {proto}"));
                }
            }
            0x95 => {
                r.take(8)?; // FRAME: a length hint only
            }
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
            b'K' => stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(r.u16()?))),
            0x8a => {
                let n = usize::from(r.u8()?);
                let b = r.take(n)?;
                if n > 8 {
                    return refuse("it holds an integer wider than 64 bits");
                }
                let mut v: i64 = 0;
                for (i, byte) in b.iter().enumerate() {
                    v |= i64::from(*byte) << (8 * i);
                }
                let negative = b.last().is_some_and(|last| last & 0x80 != 0);
                if n > 0 && n < 8 && negative {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                stack.push(Value::Float(f64::from_be_bytes(r.array()?)));
            }
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.text(n)?));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Str(r.text(n)?));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return refuse("it names a global with values that are not strings"),
                }
            }
            b'q' => {
                let k = u32::from(r.u8()?);
                memo.insert(k, stack.last().cloned().unwrap_or(Value::None));
            }
            b'r' => {
                let k = r.u32()?;
                memo.insert(k, stack.last().cloned().unwrap_or(Value::None));
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().cloned().unwrap_or(Value::None));
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    u32::from(r.u8()?)
                } else {
                    r.u32()?
                };
                match memo.get(&k) {
                    Some(v) => stack.push(v.clone()),
                    None => return refuse("it recalls a value it never stored"),
                }
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return refuse("it builds a tuple from an empty stack");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::List(items));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return refuse("it appends to something that is not a list"),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return refuse("it appends to something that is not a list"),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    _ => return refuse("it sets an item of something that is not a dict"),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                if items.len() % 2 != 0 {
                    return refuse("it sets a key without a value");
                }
                let Some(Value::Dict(d)) = stack.last_mut() else {
                    return refuse("it sets items of something that is not a dict");
                };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'b' => {
                // BUILD: the state of an OrderedDict (its `_metadata`) or a tensor's extra state;
                // neither changes the tensors.
                pop(&mut stack)?;
                if stack.is_empty() {
                    return refuse("it sets the state of nothing");
                }
            }
            other => {
                return refuse(format!(
                    "it uses the pickle instruction 0x{other:02x}, which torch.save does not write for a state dict"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dict_of_plain_values_is_read() {
        // pickle.dumps({"a": 1, "b": (2, "x")}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02K\x02X\x01\x00\x00\x00xq\x03\x86q\x04u.";
        let v = parse(bytes).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (
                    Value::Str("b".into()),
                    Value::Tuple(vec![Value::Int(2), Value::Str("x".into())])
                ),
            ])
        );
    }

    #[test]
    fn a_call_outside_the_state_dict_vocabulary_is_refused() {
        // pickle.dumps of os.system("true"), protocol 2
        let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        let err = parse(bytes).unwrap_err();
        assert!(err.0.contains("posix.system"), "{}", err.0);
    }

    #[test]
    fn a_pickle_cut_short_is_refused() {
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00";
        assert!(parse(bytes).is_err());
    }
}

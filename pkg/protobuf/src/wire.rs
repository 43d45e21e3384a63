//! Protobuf wire format: varints, fixed-width values and length-delimited
//! fields. Groups (wire types 3 and 4) are rejected; Kubernetes never uses them.

use crate::error::{Error, Result};

/// One field as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl Value<'_> {
    /// The wire type number.
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32(_) => 5,
        }
    }
}

/// Reads fields from one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        if self.buf.len() < 10 {
            Err(Error::Truncated("varint"))
        } else {
            Err(Error::BadVarint)
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64> {
        let b = self.take(8, "fixed64")?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Reads the next field: its number and value.
    pub(crate) fn field(&mut self) -> Result<(u32, Value<'a>)> {
        let key = self.varint()?;
        let (field, wire_type) = (key >> 3, key & 7);
        let number = u32::try_from(field)
            .ok()
            .filter(|&n| n != 0)
            .ok_or(Error::BadKey { field, wire_type })?;
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| Error::Truncated("length"))?;
                Value::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => {
                let b = self.take(4, "fixed32")?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            _ => return Err(Error::BadKey { field, wire_type }),
        };
        Ok((number, value))
    }
}

/// Iterates over all fields of a message.
pub(crate) fn fields(buf: &[u8]) -> impl Iterator<Item = Result<(u32, Value<'_>)>> {
    let mut reader = Reader::new(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || reader.is_empty() {
            return None;
        }
        let next = reader.field();
        failed = next.is_err();
        Some(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut r = Reader::new(&[0x96, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.varint().unwrap(), 150);
        assert_eq!(r.varint().unwrap(), 0);
        assert_eq!(r.varint().unwrap(), u64::from(u32::MAX));
        assert!(r.is_empty());
        // -1 as int32/int64: ten bytes.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.varint().unwrap() as i64, -1);
    }

    #[test]
    fn bad_varints() {
        assert!(matches!(
            Reader::new(&[0x80, 0x80]).varint(),
            Err(Error::Truncated(_))
        ));
        assert!(matches!(
            Reader::new(&[0x80; 11]).varint(),
            Err(Error::BadVarint)
        ));
    }

    #[test]
    fn all_wire_types() {
        let buf = [
            0x08, 0x01, // 1: varint 1
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        let got: Vec<_> = fields(&buf).collect::<Result<_>>().unwrap();
        assert_eq!(
            got,
            vec![
                (1, Value::Varint(1)),
                (2, Value::Fixed64(1)),
                (3, Value::Bytes(b"hi")),
                (4, Value::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn truncation_and_bad_keys() {
        let err = fields(&[0x1a, 0x05, b'a']).next().unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Truncated("length-delimited field")),
            "{err}"
        );
        let err = fields(&[0x0b]).next().unwrap().unwrap_err(); // group start
        assert!(matches!(err, Error::BadKey { wire_type: 3, .. }), "{err}");
        let err = fields(&[0x00, 0x00]).next().unwrap().unwrap_err(); // field 0
        assert!(matches!(err, Error::BadKey { field: 0, .. }), "{err}");
        assert_eq!(fields(&[0x0b, 0x08]).count(), 1, "stops after an error");
    }
}

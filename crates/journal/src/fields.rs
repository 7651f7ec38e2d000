//! The fields of a payload, written and read back: shared by journal records ([`format`])
//! and snapshots. Every read names the field it was reading when it fails.
//!
//! [`format`]: crate::format

use engine::{ClientId, Price, Qty, RequestId, Title};

use crate::format::{le_u32, FormatError};

pub(crate) fn put_ids(out: &mut Vec<u8>, client: ClientId, request: RequestId) {
    out.extend_from_slice(&client.0.to_le_bytes());
    out.extend_from_slice(&request.0.to_le_bytes());
}

pub(crate) fn put_title(out: &mut Vec<u8>, title: Option<&Title>) {
    let bytes = title.map_or(&[][..], |t| t.as_str().as_bytes());
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// Reads the fields of a payload in order; every error names the field and the record's
/// offset (the snapshot reader uses it too, with the offset of its body).
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) offset: u64,
}

impl Reader<'_> {
    pub(crate) fn bad(&self, field: &'static str, problem: &str) -> FormatError {
        FormatError::Payload {
            offset: self.offset,
            field,
            problem: problem.to_owned(),
        }
    }

    pub(crate) fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], FormatError> {
        if self.bytes.len() < n {
            return Err(self.bad(field, "the payload ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(field, 1)?[0])
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(le_u32(self.take(field, 4)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        let b = self.take(field, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub(crate) fn u128(&mut self, field: &'static str) -> Result<u128, FormatError> {
        let b = self.take(field, 16)?;
        Ok(u128::from_le_bytes(b.try_into().expect("16 bytes")))
    }

    /// A client id: 128 bits, never 0.
    pub(crate) fn client(&mut self) -> Result<ClientId, FormatError> {
        let client = ClientId(self.u128("client")?);
        if client.0 == 0 {
            return Err(self.bad("client", "0 is not a client id"));
        }
        Ok(client)
    }

    pub(crate) fn ids(&mut self) -> Result<(ClientId, RequestId), FormatError> {
        let client = self.client()?;
        Ok((client, RequestId(self.u64("request")?)))
    }

    pub(crate) fn price(&mut self, field: &'static str) -> Result<Price, FormatError> {
        let cents = self.u64(field)?;
        Price::from_cents(cents).map_err(|e| self.bad(field, &e.to_string()))
    }

    pub(crate) fn qty(&mut self) -> Result<Qty, FormatError> {
        let qty = self.u32("qty")?;
        Qty::new(u64::from(qty)).map_err(|e| self.bad("qty", &e.to_string()))
    }

    /// A length-prefixed title; length 0 means none.
    pub(crate) fn title(&mut self) -> Result<Option<Title>, FormatError> {
        let len = self.u8("title_len")? as usize;
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.take("title", len)?;
        Title::from_bytes(bytes)
            .map(Some)
            .map_err(|e| self.bad("title", &e.to_string()))
    }
}

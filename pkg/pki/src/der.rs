//! Just enough DER to give a certificate several Organization (O) attributes.
//!
//! Kubernetes reads a client's groups from repeated `O` attributes of the
//! subject, but rcgen's `DistinguishedName` keeps one value per attribute type.
//! For such certificates rcgen's output is taken apart, the subject replaced
//! with one written here, and the TBS part signed again with the CA key.

/// OID 2.5.4.3 (commonName), DER content bytes.
const OID_CN: [u8; 3] = [0x55, 0x04, 0x03];
/// OID 2.5.4.10 (organizationName), DER content bytes.
const OID_O: [u8; 3] = [0x55, 0x04, 0x0a];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Splits `input` into its top-level TLVs (each returned whole, header included).
pub(crate) fn split(mut input: &[u8]) -> Option<Vec<&[u8]>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        let (item, rest) = next(input)?;
        items.push(item);
        input = rest;
    }
    Some(items)
}

/// Returns the first TLV of `input` and the remainder.
fn next(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *input.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    if input.len() < end {
        return None;
    }
    Some(input.split_at(end))
}

/// The content of a single TLV with tag `tag`.
fn content(item: &[u8], tag: u8) -> Option<&[u8]> {
    if item.first() != Some(&tag) {
        return None;
    }
    let header = if item[1] < 0x80 {
        2
    } else {
        2 + usize::from(item[1] & 0x7f)
    };
    item.get(header..)
}

/// A subject with one `O` RDN per organization, then the `CN`.
pub(crate) fn subject(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let atv = [tlv(TAG_OID, oid), tlv(TAG_UTF8, value.as_bytes())].concat();
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &atv))
    };
    let mut rdns: Vec<u8> = organizations.iter().flat_map(|o| rdn(&OID_O, o)).collect();
    rdns.extend(rdn(&OID_CN, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Replaces the subject of the certificate `cert_der` with `subject_der` and
/// signs the result with `sign`; `None` if `cert_der` is not shaped like an
/// X.509 v3 certificate.
pub(crate) fn replace_subject<E>(
    cert_der: &[u8],
    subject_der: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Option<Result<Vec<u8>, E>> {
    let outer = split(content(cert_der, TAG_SEQUENCE)?)?;
    let [tbs, algorithm, _signature] = outer.as_slice() else {
        return None;
    };
    let mut fields = split(content(tbs, TAG_SEQUENCE)?)?;
    // version, serialNumber, signature, issuer, validity, subject, ...
    if fields.len() < 7 || fields[0].first() != Some(&TAG_VERSION) {
        return None;
    }
    fields[5] = subject_der;
    let tbs = tlv(TAG_SEQUENCE, &fields.concat());
    let signature = match sign(&tbs) {
        Ok(sig) => sig,
        Err(e) => return Some(Err(e)),
    };
    let bits = tlv(TAG_BIT_STRING, &[&[0u8][..], &signature].concat());
    Some(Ok(tlv(
        TAG_SEQUENCE,
        &[tbs.as_slice(), algorithm, &bits].concat(),
    )))
}

/// PEM-encodes `der` with the given label (64-column lines, LF endings).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    #[test]
    fn tlv_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let body = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &body);
            let items = split(&encoded).unwrap();
            assert_eq!(items, [encoded.as_slice()]);
            assert_eq!(content(items[0], TAG_SEQUENCE).unwrap(), body.as_slice());
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(split(&encoded[..4]).is_none());
        assert!(split(&[0x30, 0x85, 1]).is_none());
    }

    #[test]
    fn subject_parses_with_all_organizations() {
        let der = subject("alice", &["dev".into(), "ops".into()]);
        let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert_eq!(name.to_string(), "O=dev, O=ops, CN=alice");
    }
}

//! BER string values, for RFC 4514's `#` hex form.

/// Decodes a BER/DER string value (tag, definite length, content) of one of the
/// directory string types.
pub(super) fn ber_string(der: &[u8]) -> Option<String> {
    let (&tag, rest) = der.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, content) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if content.len() != len {
        return None;
    }
    match tag {
        // UTF8String
        0x0c => String::from_utf8(content.to_vec()).ok(),
        // NumericString, PrintableString, IA5String, VisibleString
        0x12 | 0x13 | 0x16 | 0x1a => content
            .is_ascii()
            .then(|| String::from_utf8_lossy(content).into_owned()),
        // TeletexString: read as Latin-1, as most software does
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1e if len.is_multiple_of(2) => {
            let units = content.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units).collect::<Result<String, _>>().ok()
        }
        // UniversalString: UCS-4BE
        0x1c if len.is_multiple_of(4) => content
            .chunks_exact(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

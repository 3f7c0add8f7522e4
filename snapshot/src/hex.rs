//! Hex encoding for the binary blobs kept in the manifest (XSAVE areas,
//! siginfo).

pub fn encode(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn decode(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd-length hex ({} digits)", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("bad hex at {i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        let data = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::encode(&data), "0001abff");
        assert_eq!(super::decode("0001abff").unwrap(), data);
        assert!(super::decode("abc").is_err());
        assert!(super::decode("zz").is_err());
    }
}

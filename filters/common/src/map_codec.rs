//! The proxy-wasm ABI's header map encoding: a u32 count, then (u32 key
//! length, u32 value length) pairs, then each key and value followed by
//! NUL, all little-endian. Decoding never panics, whatever the bytes.

pub fn encode_map(map: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + map
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    out.extend_from_slice(&len32(map.len()).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&len32(k.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes a header map; `None` if the host's bytes are malformed.
pub fn decode_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    let mut p = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let k_len = u32_at(4 + i * 8)?;
        let v_len = u32_at(8 + i * 8)?;
        let key = bytes.get(p..p.checked_add(k_len)?)?;
        p = p.checked_add(k_len + 1)?;
        let value = bytes.get(p..p.checked_add(v_len)?)?;
        p = p.checked_add(v_len + 1)?;
        out.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips() {
        let map: Vec<(&str, &[u8])> =
            vec![(":status", b"200"), ("x-a", b"\xff\x00b"), ("empty", b"")];
        let decoded = decode_map(&encode_map(&map)).unwrap();
        let back: Vec<(&str, &[u8])> = decoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        assert_eq!(back, map);
        assert_eq!(decode_map(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_bytes_are_refused_not_trapped() {
        let good = encode_map(&[("k", b"v")]);
        // (A missing final NUL is tolerated: nothing is read past the value.)
        for cut in 0..good.len() - 1 {
            assert!(decode_map(&good[..cut]).is_none() || cut == 0);
        }
        assert!(decode_map(&[0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(decode_map(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_none());
    }
}

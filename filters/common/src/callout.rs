//! Reading a callout's answer: the one place that turns the `:status`
//! header of an HTTP call's response into a status code.

/// The status code of a callout response from its raw `:status` value.
/// Surrounding whitespace is ignored; anything but a number in 100..=999 is
/// no status at all (the caller treats it as a failed call).
pub fn status(raw: Option<&[u8]>) -> Option<u32> {
    let text = std::str::from_utf8(raw?).ok()?.trim();
    text.parse::<u32>().ok().filter(|s| (100..=999).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_a_status_and_nothing_else() {
        let cases: &[(Option<&[u8]>, Option<u32>)] = &[
            (Some(b"200"), Some(200)),
            (Some(b" 503 "), Some(503)),
            (Some(b"99"), None),
            (Some(b"1000"), None),
            (Some(b"20x"), None),
            (Some(b""), None),
            (Some(b"\xff"), None),
            (None, None),
        ];
        for (raw, want) in cases {
            assert_eq!(status(*raw), *want, "{raw:?}");
        }
    }
}

//! Non-panicking proxy-wasm hostcalls for the request path (Envoy only).
//!
//! The SDK's `hostcalls` wrappers `panic!` on any status they do not expect
//! (for example a header map that is gone after a reset), and a panic traps
//! the worker's VM. These call the same ABI imports and turn every failure
//! into `None`/`false`. Encodings follow the proxy-wasm ABI 0.2.1 spec:
//! property paths are segments joined by NUL; header maps are a u32 count,
//! then (u32 key length, u32 value length) pairs, then each key and value
//! followed by NUL, all little-endian.

use crate::host::HostError;
use crate::map_codec::{decode_map, encode_map};
use std::ptr::{null, null_mut};

/// Header map types of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Map {
    RequestHeaders = 0,
    ResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `size` bytes it allocated with the SDK's
    // allocator, whose layout is that of a Vec with capacity `size`.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

pub fn get_header(map: Map, key: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: valid pointers to locals; the host writes a buffer it allocated.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, key.as_ptr(), key.len(), &mut data, &mut size)
    };
    (status == OK).then(|| take(data, size))
}

pub fn get_headers(map: Map) -> Vec<(String, Vec<u8>)> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as above.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != OK {
        return Vec::new();
    }
    decode_map(&take(data, size)).unwrap_or_default()
}

/// The host's status as a result.
fn checked(call: &'static str, status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
}

pub fn replace_header(map: Map, key: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the host only reads the given ranges.
    let status = unsafe {
        proxy_replace_header_map_value(
            map as u32,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    checked("replace_header_map_value", status)
}

pub fn remove_header(map: Map, key: &str) -> Result<(), HostError> {
    // SAFETY: the host only reads the given range.
    let status = unsafe { proxy_remove_header_map_value(map as u32, key.as_ptr(), key.len()) };
    checked("remove_header_map_value", status)
}

pub fn get_property(path: &[&str]) -> Option<Vec<u8>> {
    let path = encode_path(path);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as above.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    (status == OK).then(|| take(data, size))
}

pub fn set_property(path: &[&str], value: &[u8]) -> bool {
    let path = encode_path(path);
    // SAFETY: the host only reads the given ranges.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) == OK }
}

/// Answers the current stream locally. `details` shows in Envoy's
/// `%RESPONSE_CODE_DETAILS%` and the `response.code_details` attribute.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = encode_map(headers);
    // SAFETY: the host only reads the given ranges.
    let rc = unsafe {
        proxy_send_local_response(
            status,
            if details.is_empty() {
                null()
            } else {
                details.as_ptr()
            },
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    checked("send_local_response", rc)
}

/// Resumes the current (effective) HTTP stream's request.
pub fn resume_http_request() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(0) == OK }
}

fn encode_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

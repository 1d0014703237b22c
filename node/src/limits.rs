//! The status a caller gets for a message over the size limit.
//!
//! tonic refuses a request larger than the server's receive limit with
//! `OUT_OF_RANGE`; the gRPC status-code table says `RESOURCE_EXHAUSTED`
//! ("sent or received message was larger than configured limit"), which is
//! what the other gRPC implementations answer and what clients retry on
//! differently from a bad argument. [`layer`] rewrites that one answer on
//! both servers, so a client in any language sees the standard code and a
//! message that says what to do.
//!
//! Every request of our services is a single message decoded before the
//! handler runs, so tonic always reports this failure in the response
//! headers (a trailers-only response): rewriting the headers is enough.

use tonic::codegen::http::Response;

/// The text tonic's decoder starts its message with.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// Whether `status` is tonic's refusal of a received message over the
/// limit (as a client sees it on a response stream).
pub fn is_message_too_large(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::OutOfRange && status.message().starts_with(TOO_LARGE)
}

/// Rewrites tonic's `OUT_OF_RANGE` refusal of an oversized request into
/// `RESOURCE_EXHAUSTED` with a message naming the limit.
pub fn fix_status<B>(mut resp: Response<B>) -> Response<B> {
    if resp.headers().get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return resp;
    }
    let Some(status) = tonic::Status::from_header_map(resp.headers()) else {
        return resp;
    };
    if !is_message_too_large(&status) {
        return resp;
    }
    // "…: found N bytes, the limit is: M bytes"
    let numbers: Vec<&str> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let text = match numbers.as_slice() {
        [found, limit] => format!(
            "request message of {found} bytes is larger than this server's {limit}-byte limit: send less per call (fewer alerts per batch, smaller attachments)"
        ),
        _ => "request message larger than this server's limit: send less per call".to_owned(),
    };
    // Fails only on bytes a header cannot hold; ours is ASCII.
    let _ = tonic::Status::resource_exhausted(text).add_header(resp.headers_mut());
    resp
}

/// The tower layer both servers install.
pub fn layer<B>() -> tower::util::MapResponseLayer<fn(Response<B>) -> Response<B>> {
    tower::util::MapResponseLayer::new(fix_status::<B> as fn(Response<B>) -> Response<B>)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: tonic::Code, message: &str) -> Response<()> {
        let mut r = Response::new(());
        tonic::Status::new(code, message)
            .add_header(r.headers_mut())
            .unwrap();
        r
    }

    fn status(r: &Response<()>) -> tonic::Status {
        tonic::Status::from_header_map(r.headers()).unwrap()
    }

    #[test]
    fn an_oversized_request_becomes_resource_exhausted_naming_the_limit() {
        let s = status(&fix_status(response(
            tonic::Code::OutOfRange,
            "Error, decoded message length too large: found 5242885 bytes, the limit is: 4194304 bytes",
        )));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let m = s.message();
        assert!(
            m.contains("5242885 bytes") && m.contains("4194304-byte limit"),
            "{m}"
        );
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for (c, m) in [
            (
                tonic::Code::OutOfRange,
                "index 9 is beyond the checkpoint of size 3",
            ),
            (
                tonic::Code::InvalidArgument,
                "Error, decoded message length too large: found 1 bytes",
            ),
            (tonic::Code::Ok, ""),
        ] {
            let s = status(&fix_status(response(c, m)));
            assert_eq!((s.code(), s.message()), (c, m));
        }
    }
}

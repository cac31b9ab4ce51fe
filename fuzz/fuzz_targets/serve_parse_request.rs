#![no_main]
use ferrogate::{fuzzing::check_request_parser, serve::wire::parse_request};
libfuzzer_sys::fuzz_target!(|body: &[u8]| check_request_parser(body, |b| parse_request(b).map(|p| (p.model, p.request, p.stream, p.include_usage))));

#![no_main]
use ferrogate::fuzzing::{check_stream, Vendor};
libfuzzer_sys::fuzz_target!(|input: &[u8]| check_stream(Vendor::Bedrock, input));

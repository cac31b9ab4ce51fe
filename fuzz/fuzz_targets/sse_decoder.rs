#![no_main]
// The SSE decoder: split-invariance, well-formed frames, bounded output (ferrogate::fuzzing).
libfuzzer_sys::fuzz_target!(|input: &[u8]| ferrogate::fuzzing::check_sse_decoder(input));

#![no_main]
libfuzzer_sys::fuzz_target!(|body: &[u8]| ferrogate::fuzzing::check_messages_request(body));

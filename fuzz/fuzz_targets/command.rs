//! Command parser on raw bytes: never panics, and whatever parses re-encodes to
//! a line that parses back to the same command.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::command::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse(data) {
        let wire = cmd.to_bytes();
        let again = Command::parse(&wire[..wire.len() - 2]);
        assert_eq!(again.as_ref(), Ok(&cmd), "{:?}", String::from_utf8_lossy(&wire));
    }
});

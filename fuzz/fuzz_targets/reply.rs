//! Reply parser on raw bytes: never panics, never reads past its input, and the
//! encoding of a parsed reply is stable (encode → parse → encode is identical).
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::reply::Reply;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((reply, used))) = Reply::parse(data) {
        assert!(used <= data.len());
        let wire = reply.to_bytes();
        let (again, used2) = Reply::parse(&wire).expect("own encoding parses").expect("complete");
        assert_eq!(used2, wire.len());
        assert_eq!(again.to_bytes(), wire);
    }
});

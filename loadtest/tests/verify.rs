//! Loss and duplicate detection from the two logs, and the mixes' syntax.

use estafette_load::mix::{parse_size, MixError, SizeMix};
use estafette_load::seqlog::{read_log, verify, LogError};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const RUN: &str = "00000000000000aa";

#[test]
fn finds_the_lost_and_the_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    // 0..=5 accepted; 6 refused 550 by the target; 7 fate unknown.
    let mut sent = String::new();
    for n in 0..6 {
        sent += &format!("{RUN}-{n} 250 1\n");
    }
    sent += &format!("{RUN}-6 550 0\n{RUN}-7 0 0\n");
    // 2 missing, 3 twice, 4 deferred once then delivered, 5 bounced by the
    // sink, 7 delivered although unacknowledged, and another run's noise.
    let received = format!(
        "{RUN}-0 250 1\n{RUN}-1 250 1\n{RUN}-3 250 1\n{RUN}-3 250 1\n{RUN}-4 451 1\n{RUN}-4 250 1\n\
         {RUN}-5 550 1\n{RUN}-7 250 1\n00000000000000bb-2 250 1\n"
    );
    let s = read_log(&write(dir.path(), "send.log", &sent)).unwrap();
    let r = read_log(&write(dir.path(), "received.log", &received)).unwrap();
    let v = verify(&s, &r);
    assert_eq!(v.sent, 8);
    assert_eq!(v.accepted, 6);
    assert_eq!(v.not_accepted, 2);
    assert_eq!(v.delivered, 4, "{v:?}"); // 0, 1, 3, 4
    assert_eq!(v.bounced, 1); // 5
    assert_eq!(v.lost, 1);
    assert_eq!(v.lost_examples, vec![format!("{RUN}-2")]);
    assert_eq!(v.duplicated, 1);
    assert_eq!(v.duplicate_copies, 1);
    assert_eq!(v.duplicate_examples, vec![format!("{RUN}-3")]);
    assert_eq!(v.received_unacknowledged, 1);
    assert_eq!(v.received_refused, 0);
    assert!(!v.is_clean());
}

#[test]
fn multi_recipient_messages_count_per_recipient() {
    // Two recipients: delivered in one transaction, or split in two.
    let sent = read_log_str(&format!("{RUN}-0 250 2\n{RUN}-1 250 2\n{RUN}-2 250 2\n"));
    let recv = read_log_str(&format!("{RUN}-0 250 2\n{RUN}-1 250 1\n{RUN}-1 250 1\n{RUN}-2 250 1\n"));
    let v = verify(&sent, &recv);
    assert_eq!((v.delivered, v.lost, v.duplicated), (2, 1, 0), "{v:?}");
}

#[test]
fn delivered_although_refused_is_flagged() {
    let sent = read_log_str(&format!("{RUN}-0 451 0\n"));
    let recv = read_log_str(&format!("{RUN}-0 250 1\n"));
    let v = verify(&sent, &recv);
    assert_eq!(v.received_refused, 1);
    assert!(!v.is_clean());
}

fn read_log_str(text: &str) -> Vec<estafette_load::seqlog::Record> {
    let dir = tempfile::tempdir().unwrap();
    read_log(&write(dir.path(), "log", text)).unwrap()
}

#[test]
fn malformed_log_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.log", &format!("{RUN}-0 250 1\nnot a record\n"));
    match read_log(&p) {
        Err(LogError::Syntax { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read_log(&dir.path().join("missing")),
        Err(LogError::Io { .. })
    ));
}

#[test]
fn size_mix_parsing() {
    let m = SizeMix::parse("1k:50,10k:40,1m:10").unwrap();
    assert_eq!(m.max(), 1 << 20);
    let mean = 0.5 * 1024.0 + 0.4 * 10240.0 + 0.1 * 1_048_576.0;
    assert!((m.mean() - mean).abs() < 1.0);
    assert_eq!(SizeMix::parse("10k").unwrap(), SizeMix::fixed(10240));
    assert_eq!(SizeMix::parse(" 1k : 1 , 2k : 3 ").unwrap().max(), 2048);
    assert_eq!(parse_size("1.5k"), Ok(1536));
    assert!(matches!(SizeMix::parse(""), Err(MixError::Empty)));
    assert!(matches!(SizeMix::parse("1k:0"), Err(MixError::ZeroWeights)));
    assert!(matches!(SizeMix::parse("1x:5"), Err(MixError::Size(_))));
    assert!(matches!(SizeMix::parse("1k:-5"), Err(MixError::Weight(_))));
    assert!(matches!(SizeMix::parse("1k:abc"), Err(MixError::Weight(_))));
}

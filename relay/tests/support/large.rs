//! Large messages for the tests that send them: a body no compressor
//! shrinks, the client that sends several at once, and how Postfix's
//! smtp-sink dumps them.

use std::path::{Path, PathBuf};

/// The value of environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `mb` MiB of 76-character lines (CRLF) that no compressor shrinks much
/// and no line starts with a dot.
pub fn bulk(mb: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(mb << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < mb << 20 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(ALPHABET[(x % 64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What smtp-sink's dump holds for a message: LF line ends, one empty line
/// appended.
pub fn as_dump(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(message[i]);
        i += 1;
    }
    out.push(b'\n');
    out
}

/// The header section of large message `i` (its Message-ID names it).
pub fn head(i: usize) -> String {
    format!("Subject: large {i}\r\nMessage-ID: <large-{i}@chu.test>\r\n\r\n")
}

/// smtp-sink's dump of the message whose Message-ID is `large-{i}`.
pub fn dump_of(files: &[PathBuf], i: usize) -> Vec<u8> {
    let needle = format!("Message-ID: <large-{i}@chu.test>");
    for f in files {
        let mut start = vec![0u8; 4096];
        let n = std::fs::File::open(f)
            .and_then(|mut h| std::io::Read::read(&mut h, &mut start))
            .unwrap_or(0);
        if String::from_utf8_lossy(&start[..n]).contains(&needle) {
            return std::fs::read(f).expect("read dump");
        }
    }
    panic!("no dump holds message {i}");
}

/// Python: sends `n` messages at once, `head(i)` and the bulk file each
/// (`argv`: port, CA file or `-` for no STARTTLS, n, bulk file, and the
/// recipients' domain, `cabinet.test` by default); prints one
/// reply per message.
pub const CLIENT: &str = r#"
import smtplib, ssl, sys, threading
port, ca, n, bulk_path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
domain = sys.argv[5] if len(sys.argv) > 5 else 'cabinet.test'
bulk = open(bulk_path, 'rb').read()
ctx = None
if ca != '-':
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
results = [None] * n
def send(i):
    try:
        head = f"Subject: large {i}\r\nMessage-ID: <large-{i}@chu.test>\r\n\r\n".encode()
        s = smtplib.SMTP('127.0.0.1', port, timeout=600)
        s.ehlo('dpi.chu.test')
        if ctx:
            s.starttls(context=ctx)
            s.ehlo('dpi.chu.test')
        code, msg = s.mail('dr.martin@chu.test', [f'SIZE={len(head) + len(bulk)}'])
        assert code == 250, (code, msg)
        code, msg = s.rcpt(f'dr.large{i}@{domain}')
        assert code == 250, (code, msg)
        code, msg = s.docmd('DATA')
        assert code == 354, (code, msg)
        s.send(head)
        s.send(bulk)
        s.send(b'.\r\n')
        code, msg = s.getreply()
        results[i] = f'{code} {msg.decode()}'
        s.quit()
    except Exception as e:
        results[i] = f'error {e!r}'
threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
for r in results: print(r)
"#;

/// Checks that smtp-sink's dumps in `paths` hold messages `0..n`, each
/// `head(i)` then `bulk` byte for byte, after trace headers that contain
/// `trace` (the relay that accepted it).
pub fn assert_whole(paths: &[PathBuf], n: usize, bulk: &[u8], trace: &str) {
    let body = as_dump(bulk);
    for i in 0..n {
        let dump = dump_of(paths, i);
        let mut want = as_dump(head(i).as_bytes());
        want.pop();
        want.extend_from_slice(&body);
        assert!(
            dump.ends_with(&want),
            "message {i}: the sink's copy ({} octets) does not end with the {} octets sent",
            dump.len(),
            want.len()
        );
        let text = String::from_utf8_lossy(&dump[..dump.len() - want.len()]).into_owned();
        assert!(text.contains(trace), "{text}");
    }
}

/// Octets in the files directly under `p` (a RocksDB directory: its WAL and
/// tables), 0 if it cannot be read.
pub fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

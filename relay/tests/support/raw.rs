//! A bare SMTP line client over a blocking socket (for tests that must send
//! what no library would: megabytes of DATA cut by a kill, streams past a
//! limit) and a process's memory as /proc reports it.

use std::io::{BufRead, Write};
use std::net::TcpStream;

/// One reply, all its lines (`250-…` continued until `250 …`); what was
/// read so far when the connection closes.
pub fn reply(r: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read") == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Sends `line` (CRLF added) and reads its reply.
pub fn cmd(w: &mut TcpStream, r: &mut impl BufRead, line: &str) -> String {
    w.write_all(format!("{line}\r\n").as_bytes()).expect("write");
    reply(r)
}

/// A memory field of `/proc/PID/status` in KiB: `VmHWM` (peak resident
/// set) or `VmRSS` (now).
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

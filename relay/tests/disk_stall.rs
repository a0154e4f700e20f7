//! A stalled disk under the real `estafette serve`: the spool on an ext4
//! loop device that the test freezes (`fsfreeze`), so that every write
//! blocks as on a hung device. The client in the middle of DATA gets `451`
//! when the accept deadline passes (not a hung session); once the write has
//! been stuck for `node.spool_stall_secs` the node says so (`/readyz` 503)
//! and refuses new mail at MAIL FROM at once, while still answering EHLO;
//! after the thaw it takes mail again by itself, and every message it
//! acknowledged is delivered to Postfix's smtp-sink. Needs root (loop
//! device, mount, fsfreeze), as `scripts/test` runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::node::run;
use support::peers::{free_port, smtp_sink};

/// An ext4 file system on a loop device, mounted; thawed, unmounted and
/// detached when dropped (also when the test fails while it is frozen).
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
    device: String,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl LoopFs {
    fn new(dir: &Path) -> Self {
        let image = dir.join("spool.img");
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).expect("mount point");
        let file = std::fs::File::create(&image).expect("image");
        file.set_len(256 << 20).expect("size");
        drop(file);
        sh("mkfs.ext4", &["-q", "-F", &image.display().to_string()]);
        let device = sh("losetup", &["--find", "--show", &image.display().to_string()]);
        sh("mount", &[&device, &mount.display().to_string()]);
        Self { image, mount, device }
    }

    fn freeze(&self) {
        sh("fsfreeze", &["-f", &self.mount.display().to_string()]);
    }

    fn thaw(&self) {
        let _ = Command::new("fsfreeze")
            .args(["-u", &self.mount.display().to_string()])
            .output();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.thaw();
        let _ = Command::new("umount")
            .args(["-l", &self.mount.display().to_string()])
            .output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// The node process, killed when dropped; its spool's file system is
/// thawed first (a process blocked on a frozen file system cannot be reaped,
/// and a failing test must not hang).
struct Serve(Child, PathBuf);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .args(["-u", &self.1.display().to_string()])
            .output();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn swaks(smtp: u16, to: &str, quit_after: Option<&str>) -> String {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{smtp}"), "--timeout", "60"])
        .args(["--from", "dpi@ch.test", "--to", to])
        .args([
            "--helo",
            "dpi.test",
            "--data",
            "Subject: CR\r\nX-Seq: SEQ\r\n\r\nCompte rendu.\r\n",
        ]);
    if let Some(q) = quit_after {
        cmd.args(["--quit-after", q]);
    }
    run(cmd).await.1
}

async fn readyz(admin: u16) -> (u16, String) {
    match reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_disk_is_seen_refused_at_mail_from_and_survived() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = LoopFs::new(dir.path());
    let sink = smtp_sink(&[]);
    let (smtp, admin) = (free_port(), free_port());
    let config = dir.path().join("estafette.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
hostname = "relay.test"
node_id = 1
spool = "{spool}"
accept_timeout_secs = 3
spool_stall_secs = 2

[[listener]]
name = "plain"
address = "127.0.0.1:{smtp}"
tls = "none"

[[route]]
domain = "clinique.test"
host = "{sink}"
tls = "none"

[outbound]
poll_ms = 100

[admin]
address = "127.0.0.1:{admin}"
"#,
            spool = fs.mount.join("spool").display(),
            sink = sink.addr,
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let node = Serve(
        Command::new(env!("CARGO_BIN_EXE_estafette"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("estafette starts"),
        fs.mount.clone(),
    );
    let start = Instant::now();
    while readyz(admin).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = swaks(smtp, "dr.before@clinique.test", None).await;
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    assert_eq!(sink.received(1).len(), 1);

    fs.freeze();
    // DATA ends while every write blocks: 451 when the accept deadline
    // passes, not a session that hangs.
    let t = swaks(smtp, "dr.during@clinique.test", None).await;
    assert!(t.contains("<** 451"), "{t}");
    // The stuck write is seen: not ready, and new mail refused at MAIL FROM.
    let start = Instant::now();
    let (code, body) = loop {
        let r = readyz(admin).await;
        if r.0 == 503 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never reported: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code == 503 && body.contains("spool"), "{body}");
    let t = swaks(smtp, "dr.refused@clinique.test", Some("MAIL")).await;
    assert!(t.contains("<** 451 4.3.0"), "refused at MAIL FROM: {t}");
    let t = swaks(smtp, "dr.x@clinique.test", Some("EHLO")).await;
    assert!(t.contains("250"), "still answering: {t}");

    fs.thaw();
    let start = Instant::now();
    while readyz(admin).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(30), "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = swaks(smtp, "dr.after@clinique.test", None).await;
    assert!(t.contains("250 2.0.0 queued as"), "{t}");
    // Every acknowledged message arrives; the one refused with 451 may or
    // may not (the client was told to retry).
    let start = Instant::now();
    let rcpts = loop {
        let got: Vec<String> = sink
            .files()
            .iter()
            .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
            .collect();
        let has = |r: &str| got.iter().any(|m| m.contains(&format!("X-Rcpt-Args: <{r}>")));
        if has("dr.before@clinique.test") && has("dr.after@clinique.test") {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !rcpts.iter().any(|m| m.contains("dr.refused@")),
        "refused at MAIL FROM: never stored"
    );
    drop(node);
}

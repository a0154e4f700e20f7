//! Getting the trust list's bytes: from a file, or over HTTPS verified against
//! the configured CA only (rustls with *ring*; no system roots, no plain HTTP),
//! with a size cap and a timeout; and ANS's SHA-256 checksum file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;

pub use crate::config::Location;

/// The checksum file is one digest (and maybe a file name): a few bytes.
const CHECKSUM_MAX_BYTES: u64 = 4096;

/// Why the bytes could not be had. Every variant names the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Larger than the configured cap.
    #[error("{location}: larger than {limit} bytes")]
    TooLarge {
        /// File or URL.
        location: String,
        /// The cap.
        limit: u64,
    },
    /// The HTTPS request failed (connection, TLS, timeout, body).
    #[error("{url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The CA file for HTTPS could not be used.
    #[error("CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An `https://` location without a CA file.
    #[error("{url}: HTTPS needs a CA file (trust.ca_file)")]
    NoCa {
        /// The URL.
        url: String,
    },
    /// The checksum file does not start with 64 hex digits.
    #[error("{location}: not a SHA-256 checksum file (64 hex digits expected)")]
    ChecksumFormat {
        /// File or URL of the checksum.
        location: String,
    },
}

/// How to fetch: size cap, timeout, CA file for HTTPS.
#[derive(Clone, Debug)]
pub struct Fetcher {
    /// Largest accepted body, in bytes.
    pub max_bytes: u64,
    /// Whole-request timeout for HTTPS.
    pub timeout: Duration,
    /// The only root of trust for HTTPS; `None`: HTTPS refused.
    pub ca_file: Option<PathBuf>,
}

impl Fetcher {
    /// Reads the whole resource, at most [`Fetcher::max_bytes`].
    ///
    /// # Errors
    /// [`FetchError`] naming the location. The HTTPS client (and the CA file)
    /// is set up anew for each call, so a renewed CA file is picked up by the
    /// next refresh.
    pub async fn fetch(&self, location: &Location) -> Result<Vec<u8>, FetchError> {
        self.fetch_capped(location, self.max_bytes).await
    }

    /// Reads a checksum file and returns the lower-case hex SHA-256 it holds.
    /// Accepts a bare digest or `sha256sum` output (`<hex>  <name>`).
    ///
    /// # Errors
    /// [`FetchError`], or [`FetchError::ChecksumFormat`].
    pub async fn fetch_checksum(&self, location: &Location) -> Result<String, FetchError> {
        let bytes = self.fetch_capped(location, CHECKSUM_MAX_BYTES).await?;
        parse_checksum(&bytes).ok_or_else(|| FetchError::ChecksumFormat {
            location: location.to_string(),
        })
    }

    async fn fetch_capped(&self, location: &Location, limit: u64) -> Result<Vec<u8>, FetchError> {
        match location {
            Location::File(path) => read_file(path, limit).await,
            Location::Https(url) => self.download(url, limit).await,
        }
    }

    async fn download(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let client = self.client(url)?;
        let dl_err = |e: reqwest::Error| FetchError::Download {
            url: url.to_owned(),
            reason: error_chain(&e),
        };
        let mut response = client.get(url).send().await.map_err(dl_err)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            location: url.to_owned(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(dl_err)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn client(&self, url: &str) -> Result<reqwest::Client, FetchError> {
        let path = self
            .ca_file
            .as_ref()
            .ok_or_else(|| FetchError::NoCa { url: url.to_owned() })?;
        let ca_err = |reason: String| FetchError::Ca {
            path: path.clone(),
            reason,
        };
        let roots = crate::tls::load_roots(path).map_err(|e| ca_err(e.to_string()))?;
        // ring explicitly: never the process default, which may be unset or
        // ambiguous (notes/toolchain.md).
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::https_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ca_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(15)))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("estafette/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Download {
                url: url.to_owned(),
                reason: error_chain(&e),
            })
    }
}

async fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, FetchError> {
    let read_err = |source| FetchError::Read {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let mut body = Vec::new();
    // One byte more than the cap tells "too large" from "exactly the cap".
    file.take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .await
        .map_err(read_err)?;
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            location: path.display().to_string(),
            limit,
        });
    }
    Ok(body)
}

/// The digest in a checksum file's bytes: the first word, if it is 64 hex
/// digits, lower-cased (a bare digest or `sha256sum` output).
pub fn parse_checksum(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `error: cause: cause…`: reqwest's top-level message alone ("error sending
/// request") does not say that the certificate was refused.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(Location::parse("/etc/x.xml"), Some(Location::File("/etc/x.xml".into())));
        assert_eq!(
            Location::parse("HTTPS://h/x"),
            Some(Location::Https("HTTPS://h/x".into()))
        );
        assert_eq!(Location::parse("http://h/x"), None);
        assert_eq!(Location::parse("x"), Some(Location::File("x".into())));
    }

    #[test]
    fn checksums() {
        let hex = "ea660e72943a22a92aa569878e9bcd5311bed0ae5f40b4c82a992b1990a0ec59";
        assert_eq!(parse_checksum(hex.as_bytes()).as_deref(), Some(hex));
        let sum = format!("{}  listeblanchemssante.xml\n", hex.to_uppercase());
        assert_eq!(parse_checksum(sum.as_bytes()).as_deref(), Some(hex));
        assert_eq!(parse_checksum(b""), None);
        assert_eq!(parse_checksum(&hex.as_bytes()[1..]), None);
        assert_eq!(parse_checksum(b"\xff\xfe"), None);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn file_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.xml");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut f = Fetcher {
            max_bytes: 10,
            timeout: Duration::from_secs(5),
            ca_file: None,
        };
        assert_eq!(f.fetch(&Location::File(path.clone())).await.unwrap().len(), 10);
        f.max_bytes = 9;
        assert!(matches!(
            f.fetch(&Location::File(path.clone())).await,
            Err(FetchError::TooLarge { limit: 9, .. })
        ));
        let missing = f.fetch(&Location::File(dir.path().join("nope"))).await.unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        assert!(matches!(
            f.fetch(&Location::Https("https://127.0.0.1:1/".into())).await,
            Err(FetchError::NoCa { .. })
        ));
    }
}

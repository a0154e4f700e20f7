//! The process's logs: JSON lines in production (`serve --json`), text in
//! dev, filtered by an `EnvFilter` (`RUST_LOG`, default `info`) that can be
//! changed while the node runs (`PUT /api/log`), for example to
//! `info,relay::outbound=debug` while chasing a delivery problem, and back.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

static FILTER: OnceLock<(reload::Handle<EnvFilter, Registry>, std::sync::Mutex<String>)> = OnceLock::new();

/// Installs the process's subscriber; `json` for JSON lines. Once per process.
pub fn init(json: bool) {
    let text = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry.with(fmt::layer().json()).try_init()
    } else {
        registry.with(fmt::layer()).try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set((handle, std::sync::Mutex::new(text)));
    }
}

/// The filter in force, `None` when [`init`] was not called (a node embedded
/// in a test).
pub fn filter() -> Option<String> {
    let (_, text) = FILTER.get()?;
    Some(crate::sync::lock(text).clone())
}

/// Replaces the filter (`EnvFilter` syntax: `debug`,
/// `info,relay::queue=debug`).
///
/// # Errors
/// The text is not a filter (the running one stays), or logging was not
/// initialised by [`init`].
pub fn set_filter(text: &str) -> Result<(), String> {
    let (handle, current) = FILTER
        .get()
        .ok_or_else(|| "logging is not controlled by this process".to_owned())?;
    let filter = EnvFilter::try_new(text).map_err(|e| format!("{text:?} is not a log filter: {e}"))?;
    handle
        .reload(filter)
        .map_err(|e| format!("the log filter cannot be changed: {e}"))?;
    *crate::sync::lock(current) = text.to_owned();
    tracing::info!(filter = text, "log filter changed");
    Ok(())
}

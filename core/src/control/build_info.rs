//! Which ferry this is: the version (`CARGO_PKG_VERSION`) and, when the build was given one,
//! the source revision (`FERRY_GIT_REVISION` in the build's environment, as `scripts/package`
//! sets it; no build script runs git, so an ordinary `cargo build` is not rebuilt at every
//! commit). Shown by `ferry --version` and `ferry_build_info`.

/// ferry's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision the build was made from, or `unknown`.
pub fn revision() -> &'static str {
    match option_env!("FERRY_GIT_REVISION") {
        Some(r) if !r.is_empty() => r,
        _ => "unknown",
    }
}

/// `0.1.0 (revision 1a2b3c4)`, or the version alone without a revision.
pub fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| match revision() {
        "unknown" => VERSION.to_owned(),
        r => format!("{VERSION} (revision {r})"),
    })
}

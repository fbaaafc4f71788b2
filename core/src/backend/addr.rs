//! [`BackendAddr`]: where a backend is, as configured: an IP socket address, or a host name and
//! a port that the driver resolves at each connect (session, migration, failover, health check).
//!
//! Resolution is I/O and stays in the drivers (the system resolver, `getaddrinfo` through std,
//! with no cache of ferry's own: a DNS change is followed at the next connect). What its outcome
//! means is decided here: [`BackendAddr::resolved`] turns a lookup's result into the addresses to
//! try, in order, or into a [`ResolveError`] that the driver reports as the connect's failure.
//! The core recognises that error ([`ResolveError::of`]) to word a health check's verdict
//! (`cannot resolve "db1.internal": ...`) and to tell ferry's own trouble (a full resolver queue,
//! no descriptors left) from the backend's.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A backend's address: `IP:port` (`[v6]:port`), or `host:port` with a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    /// An IP address: connected to as it is, without any lookup.
    Ip(SocketAddr),
    /// A DNS name, resolved at each connect.
    Name {
        /// The host name, as configured (checked: labels of letters, digits, '-' and '_').
        host: String,
        /// The port.
        port: u16,
    },
}

impl BackendAddr {
    /// The IP address, for a backend configured by one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Self::Ip(a) => Some(*a),
            Self::Name { .. } => None,
        }
    }

    /// The host name, for a backend configured by one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Ip(_) => None,
            Self::Name { host, .. } => Some(host),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(a) => a.port(),
            Self::Name { port, .. } => *port,
        }
    }

    /// The host as a TLS server name would give it: the name, or the IP's text.
    pub fn host(&self) -> String {
        match self {
            Self::Ip(a) => a.ip().to_string(),
            Self::Name { host, .. } => host.clone(),
        }
    }

    /// The addresses to connect to, in order, from the result of looking up a name (for an IP
    /// address: that address, whatever `lookup` holds). A failed lookup, or one that found no
    /// address, is a [`ResolveError`] (in an [`io::Error`], as a connect failure is reported).
    pub fn resolved<I>(&self, lookup: io::Result<I>) -> io::Result<Vec<SocketAddr>>
    where
        I: IntoIterator<Item = SocketAddr>,
    {
        let host = match self {
            Self::Ip(a) => return Ok(vec![*a]),
            Self::Name { host, .. } => host,
        };
        match lookup {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
                if addrs.is_empty() {
                    Err(ResolveError::new(host, Cause::NoAddress).into())
                } else {
                    Ok(addrs)
                }
            }
            Err(e) => {
                let os = e.raw_os_error();
                Err(ResolveError::new(
                    host,
                    Cause::Failed {
                        error: e.to_string(),
                        os,
                    },
                )
                .into())
            }
        }
    }

    /// The lookup did not answer within `limit` (the connect's time budget).
    pub fn resolve_timed_out(&self, limit: Duration) -> io::Error {
        ResolveError::new(&self.host(), Cause::TimedOut(limit)).into()
    }

    /// The driver's resolver has too many lookups waiting: ferry's trouble, not the backend's.
    pub fn resolver_busy(&self) -> io::Error {
        ResolveError::new(&self.host(), Cause::Busy).into()
    }
}

impl From<SocketAddr> for BackendAddr {
    fn from(a: SocketAddr) -> Self {
        Self::Ip(a)
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(a) => a.fmt(f),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a text is not a backend address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(String);

impl FromStr for BackendAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, AddrError> {
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Ok(Self::Ip(a));
        }
        let fail = |why: &str| Err(AddrError(why.to_owned()));
        if text.starts_with('[') {
            return fail("not an IPv6 address and port ([addr]:port)");
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return fail("missing port");
        };
        if host.contains(':') {
            return fail("an IPv6 address needs brackets: [addr]:port");
        }
        let Ok(port) = port.parse::<u16>() else {
            return fail("invalid port (0 to 65535)");
        };
        if !valid_host_name(host) {
            return fail("invalid host name (labels of 1 to 63 letters, digits, '-' or '_', separated by '.')");
        }
        Ok(Self::Name {
            host: host.to_owned(),
            port,
        })
    }
}

/// A DNS name (RFC 1123, with '_' too, as service names use it): at most 253 characters, labels
/// of 1 to 63, no '-' at either end of one; the last label is not all digits, so that a mistyped
/// IPv4 address (`10.0.0.256`) is refused, not looked up.
fn valid_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    /// The lookup's error, and its OS error code (`EAI_SYSTEM`: the system call's).
    Failed {
        error: String,
        os: Option<i32>,
    },
    NoAddress,
    TimedOut(Duration),
    Busy,
}

/// A backend's name could not be resolved: what the driver reports as its connect's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    host: String,
    cause: Cause,
}

impl ResolveError {
    fn new(host: &str, cause: Cause) -> Self {
        Self {
            host: host.to_owned(),
            cause,
        }
    }

    /// The resolve error a connect failure holds, if it is one.
    pub fn of(error: &io::Error) -> Option<&Self> {
        error.get_ref()?.downcast_ref()
    }

    /// The name that did not resolve.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The driver's resolver had too many lookups waiting: ferry's trouble, which says nothing
    /// about the backend.
    pub fn is_busy(&self) -> bool {
        self.cause == Cause::Busy
    }

    /// The OS error the lookup failed with, if any (out of descriptors: ferry's trouble too).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self.cause {
            Cause::Failed { os, .. } => os,
            _ => None,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {:?}: ", self.host)?;
        match &self.cause {
            Cause::Failed { error, .. } => f.write_str(error),
            Cause::NoAddress => f.write_str("no address found"),
            Cause::TimedOut(limit) => write!(f, "no answer within {limit:?}"),
            Cause::Busy => f.write_str("too many lookups waiting in ferry's resolver"),
        }
    }
}

impl std::error::Error for ResolveError {}

impl From<ResolveError> for io::Error {
    fn from(e: ResolveError) -> Self {
        io::Error::other(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BackendAddr, String> {
        text.parse::<BackendAddr>().map_err(|e| e.to_string())
    }

    #[test]
    fn ip_addresses_names_and_ipv6_in_brackets() {
        let ip = parse("10.0.0.7:3306").unwrap();
        assert_eq!(ip, BackendAddr::Ip("10.0.0.7:3306".parse().unwrap()));
        assert_eq!(ip.host(), "10.0.0.7");
        assert_eq!(ip.name(), None);
        let v6 = parse("[::1]:3307").unwrap();
        assert_eq!(v6.ip(), Some("[::1]:3307".parse().unwrap()));
        assert_eq!(v6.to_string(), "[::1]:3307");
        let name = parse("db1.internal:3306").unwrap();
        assert_eq!(
            name,
            BackendAddr::Name {
                host: "db1.internal".into(),
                port: 3306
            }
        );
        assert_eq!((name.name(), name.port()), (Some("db1.internal"), 3306));
        assert_eq!(name.to_string(), "db1.internal:3306");
        assert_eq!(name.ip(), None);
        for ok in ["localhost:1", "my_db-2.svc.cluster.local.:3306", "a.b1:0"] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        let cases = [
            ("db1.internal", "missing port"),
            ("x", "missing port"),
            ("", "missing port"),
            ("db1:", "invalid port"),
            ("db1:65536", "invalid port"),
            ("db1:-1", "invalid port"),
            ("::1:3306", "brackets"),
            ("[::1]", "IPv6"),
            ("[db1]:3306", "IPv6"),
            ("10.0.0.256:3306", "invalid host name"),
            ("1.2.3:3306", "invalid host name"),
            ("-db:3306", "invalid host name"),
            ("db-.x:3306", "invalid host name"),
            ("db..x:3306", "invalid host name"),
            ("db x:3306", "invalid host name"),
            ("db/1:3306", "invalid host name"),
            (":3306", "invalid host name"),
        ];
        for (text, why) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let long_label = format!("{}.x:1", "a".repeat(64));
        assert!(parse(&long_label).is_err());
        let long_name = format!("{}x:1", "a.".repeat(127));
        assert!(parse(&long_name).is_err());
    }

    #[test]
    fn a_lookup_becomes_addresses_or_a_resolve_error() {
        let name: BackendAddr = "db1.internal:3306".parse().unwrap();
        let found: Vec<SocketAddr> = vec!["10.0.0.1:3306".parse().unwrap()];
        assert_eq!(name.resolved(Ok(found.clone())).unwrap(), found);

        let nothing = name.resolved(Ok(Vec::new())).unwrap_err();
        assert_eq!(
            nothing.to_string(),
            "cannot resolve \"db1.internal\": no address found"
        );
        let failed = name
            .resolved::<Vec<SocketAddr>>(Err(io::Error::other("Name or service not known")))
            .unwrap_err();
        let r = ResolveError::of(&failed).expect("a resolve error");
        assert_eq!(r.host(), "db1.internal");
        assert!(!r.is_busy() && r.raw_os_error().is_none());
        assert_eq!(
            failed.to_string(),
            "cannot resolve \"db1.internal\": Name or service not known"
        );
        // The OS error is kept (the control plane tells ferry's own trouble by it).
        let os = name
            .resolved::<Vec<SocketAddr>>(Err(io::Error::from_raw_os_error(24)))
            .unwrap_err();
        assert_eq!(ResolveError::of(&os).unwrap().raw_os_error(), Some(24));
        assert!(ResolveError::of(&name.resolver_busy()).unwrap().is_busy());
        let slow = name.resolve_timed_out(Duration::from_millis(400));
        assert!(
            slow.to_string().contains("no answer within 400ms"),
            "{slow}"
        );
        assert!(!ResolveError::of(&slow).unwrap().is_busy());

        // An IP address needs no lookup.
        let ip: BackendAddr = "10.0.0.7:3306".parse().unwrap();
        let none: io::Result<Vec<SocketAddr>> = Err(io::Error::other("unused"));
        assert_eq!(
            ip.resolved(none).unwrap(),
            vec!["10.0.0.7:3306".parse().unwrap()]
        );
        // Other errors are no resolve errors.
        assert!(ResolveError::of(&io::Error::from(io::ErrorKind::ConnectionRefused)).is_none());
    }
}

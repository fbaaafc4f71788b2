//! Capability flags and server status flags.

macro_rules! flag_consts {
    ($ty:ident : $inner:ty { $($(#[$m:meta])* $name:ident = $val:expr;)* }) => {
        impl $ty {
            $($(#[$m])* pub const $name: $ty = $ty($val);)*
        }
    };
}

/// Capability flags (`CLIENT_*`), 32 bits as exchanged in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

flag_consts!(Capabilities: u32 {
    /// CLIENT_LONG_PASSWORD
    LONG_PASSWORD = 1;
    /// CLIENT_FOUND_ROWS
    FOUND_ROWS = 1 << 1;
    /// CLIENT_LONG_FLAG
    LONG_FLAG = 1 << 2;
    /// CLIENT_CONNECT_WITH_DB
    CONNECT_WITH_DB = 1 << 3;
    /// CLIENT_NO_SCHEMA
    NO_SCHEMA = 1 << 4;
    /// CLIENT_COMPRESS
    COMPRESS = 1 << 5;
    /// CLIENT_ODBC
    ODBC = 1 << 6;
    /// CLIENT_LOCAL_FILES
    LOCAL_FILES = 1 << 7;
    /// CLIENT_IGNORE_SPACE
    IGNORE_SPACE = 1 << 8;
    /// CLIENT_PROTOCOL_41
    PROTOCOL_41 = 1 << 9;
    /// CLIENT_INTERACTIVE
    INTERACTIVE = 1 << 10;
    /// CLIENT_SSL
    SSL = 1 << 11;
    /// CLIENT_IGNORE_SIGPIPE
    IGNORE_SIGPIPE = 1 << 12;
    /// CLIENT_TRANSACTIONS
    TRANSACTIONS = 1 << 13;
    /// CLIENT_RESERVED
    RESERVED = 1 << 14;
    /// CLIENT_SECURE_CONNECTION (CLIENT_RESERVED2)
    SECURE_CONNECTION = 1 << 15;
    /// CLIENT_MULTI_STATEMENTS
    MULTI_STATEMENTS = 1 << 16;
    /// CLIENT_MULTI_RESULTS
    MULTI_RESULTS = 1 << 17;
    /// CLIENT_PS_MULTI_RESULTS
    PS_MULTI_RESULTS = 1 << 18;
    /// CLIENT_PLUGIN_AUTH
    PLUGIN_AUTH = 1 << 19;
    /// CLIENT_CONNECT_ATTRS
    CONNECT_ATTRS = 1 << 20;
    /// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21;
    /// CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22;
    /// CLIENT_SESSION_TRACK
    SESSION_TRACK = 1 << 23;
    /// CLIENT_DEPRECATE_EOF
    DEPRECATE_EOF = 1 << 24;
    /// CLIENT_OPTIONAL_RESULTSET_METADATA
    OPTIONAL_RESULTSET_METADATA = 1 << 25;
    /// CLIENT_ZSTD_COMPRESSION_ALGORITHM
    ZSTD_COMPRESSION_ALGORITHM = 1 << 26;
    /// CLIENT_QUERY_ATTRIBUTES
    QUERY_ATTRIBUTES = 1 << 27;
    /// CLIENT_MULTI_FACTOR_AUTHENTICATION
    MULTI_FACTOR_AUTHENTICATION = 1 << 28;
    /// CLIENT_CAPABILITY_EXTENSION
    CAPABILITY_EXTENSION = 1 << 29;
    /// CLIENT_SSL_VERIFY_SERVER_CERT
    SSL_VERIFY_SERVER_CERT = 1 << 30;
    /// CLIENT_REMEMBER_OPTIONS
    REMEMBER_OPTIONS = 1 << 31;
});

impl Capabilities {
    /// No flags.
    pub const EMPTY: Capabilities = Capabilities(0);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
    /// The flags set in both.
    pub fn intersect(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & other.0)
    }
    /// `self` with the flags of `other` removed.
    pub fn without(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Capabilities) {
        self.0 |= rhs.0;
    }
}

/// Server status flags (`SERVER_STATUS_*`) as carried by OK and EOF packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServerStatus(pub u16);

flag_consts!(ServerStatus: u16 {
    /// SERVER_STATUS_IN_TRANS: a transaction is open.
    IN_TRANS = 1;
    /// SERVER_STATUS_AUTOCOMMIT
    AUTOCOMMIT = 1 << 1;
    /// SERVER_MORE_RESULTS_EXISTS: another result set follows.
    MORE_RESULTS_EXISTS = 1 << 3;
    /// SERVER_QUERY_NO_GOOD_INDEX_USED
    NO_GOOD_INDEX_USED = 1 << 4;
    /// SERVER_QUERY_NO_INDEX_USED
    NO_INDEX_USED = 1 << 5;
    /// SERVER_STATUS_CURSOR_EXISTS: a cursor was opened; rows come with COM_STMT_FETCH.
    CURSOR_EXISTS = 1 << 6;
    /// SERVER_STATUS_LAST_ROW_SENT: the cursor is exhausted.
    LAST_ROW_SENT = 1 << 7;
    /// SERVER_STATUS_DB_DROPPED
    DB_DROPPED = 1 << 8;
    /// SERVER_STATUS_NO_BACKSLASH_ESCAPES
    NO_BACKSLASH_ESCAPES = 1 << 9;
    /// SERVER_STATUS_METADATA_CHANGED
    METADATA_CHANGED = 1 << 10;
    /// SERVER_QUERY_WAS_SLOW
    QUERY_WAS_SLOW = 1 << 11;
    /// SERVER_PS_OUT_PARAMS
    PS_OUT_PARAMS = 1 << 12;
    /// SERVER_STATUS_IN_TRANS_READONLY
    IN_TRANS_READONLY = 1 << 13;
    /// SERVER_SESSION_STATE_CHANGED: the OK packet carries session-state information.
    SESSION_STATE_CHANGED = 1 << 14;
});

impl ServerStatus {
    /// True when every flag of `other` is set.
    pub fn contains(self, other: ServerStatus) -> bool {
        self.0 & other.0 == other.0
    }
}

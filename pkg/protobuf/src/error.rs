//! Errors from decoding Kubernetes protobuf bodies.

/// Why a protobuf body could not be turned into JSON.
///
/// [`Error::UnknownKind`] and [`Error::UnsupportedEncoding`] mean the body is
/// well-formed but not something this crate can decode (HTTP 415); every other
/// variant means the body itself is malformed (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body does not start with the `k8s\0` magic prefix.
    #[error("not a Kubernetes protobuf body: missing \"k8s\\0\" magic prefix")]
    BadMagic,
    /// A length, varint or fixed-width value runs past the end of its message.
    #[error("truncated protobuf message while reading {0}")]
    Truncated(&'static str),
    /// A varint is longer than 10 bytes.
    #[error("malformed protobuf varint")]
    BadVarint,
    /// A field key carries field number 0 or a wire type protobuf does not define.
    #[error("invalid protobuf field key (field {field}, wire type {wire_type})")]
    BadKey {
        /// Field number.
        field: u64,
        /// Wire type.
        wire_type: u64,
    },
    /// A known field arrived with the wrong wire type.
    #[error("field {field} of {message}: wire type {got} does not match its schema")]
    WireType {
        /// Proto message name.
        message: String,
        /// JSON field name.
        field: String,
        /// Wire type seen.
        got: u8,
    },
    /// The envelope names no kind and the caller expected none.
    #[error("protobuf envelope has no apiVersion/kind")]
    MissingTypeMeta,
    /// The envelope names a kind that is not a built-in Kubernetes type.
    #[error("unknown kind for protobuf: {api_version}, Kind={kind}")]
    UnknownKind {
        /// Envelope apiVersion.
        api_version: String,
        /// Envelope kind.
        kind: String,
    },
    /// The envelope's contentEncoding or contentType is not supported.
    #[error("unsupported protobuf envelope {what} {value:?}")]
    UnsupportedEncoding {
        /// `contentEncoding` or `contentType`.
        what: &'static str,
        /// The value sent.
        value: String,
    },
    /// A string field is not valid UTF-8.
    #[error("field {field} of {message} is not valid UTF-8")]
    InvalidUtf8 {
        /// Proto message name.
        message: String,
        /// JSON field name.
        field: String,
    },
    /// An embedded raw JSON value (RawExtension, FieldsV1, JSON) does not parse.
    #[error("invalid embedded JSON in {message}")]
    EmbeddedJson {
        /// Proto message name.
        message: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// A Time/MicroTime lies outside the representable range.
    #[error("timestamp out of range: {seconds}s {nanos}ns")]
    TimeOutOfRange {
        /// Seconds since the epoch.
        seconds: i64,
        /// Nanoseconds.
        nanos: i64,
    },
    /// A double field is NaN or infinite, which JSON cannot carry.
    #[error("field {0} holds a non-finite double")]
    NonFinite(String),
    /// Messages are nested deeper than the decoder allows.
    #[error("protobuf messages nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

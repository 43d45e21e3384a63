//! Pure Kubernetes API machinery on `serde_json::Value` objects: the resource
//! table, patching (JSON, merge, strategic merge, server-side apply), label
//! and field selectors, Table output, defaulting and validation, OpenAPI
//! schemas. No I/O here; the API server composes these.

pub mod crd;
pub mod discovery;
pub mod openapi;
pub mod patch;
pub mod quantity;
pub mod quota;
pub mod resource;
pub mod scheduling;
pub mod selector;
pub mod semantic;
pub mod serviceaccount;
pub mod table;
pub mod typed;
pub mod validation;

pub use resource::ResourceInfo;

/// A field-level cause of an Invalid error (metav1.StatusCause).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cause {
    /// Machine reason, e.g. "FieldValueInvalid", "FieldValueRequired".
    pub reason: String,
    /// Human message, e.g. "Invalid value: \"A\": a lowercase RFC 1123 subdomain ...".
    pub message: String,
    /// JSON path of the field, e.g. "metadata.name".
    pub field: String,
}

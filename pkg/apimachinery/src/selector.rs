//! Label and field selectors as kube-apiserver parses and evaluates them:
//! the `labelSelector` / `fieldSelector` query strings, `metav1.LabelSelector`
//! objects, and the per-resource list of selectable fields. Error texts follow
//! the upstream messages so clients see what they would from Kubernetes.

mod field;
mod label;
mod validation;

pub use field::FieldSelector;
pub use label::{LabelSelector, Operator, Requirement};

/// Why a selector could not be parsed or built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label requirement is malformed or names an invalid key or value.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// The label selector string does not follow the grammar.
    #[error("{0}")]
    Syntax(String),
    /// A `metav1.LabelSelector` object failed validation (key, values).
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` entry has an operator other than In/NotIn/Exists/DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    Operator(String),
    /// A `metav1.LabelSelector` object has the wrong JSON shape.
    #[error("invalid label selector: {0}")]
    Malformed(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector string.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value has a backslash escape other than `\\`, `\,`, `\=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    Escape(String),
    /// A field selector value has an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    Unescaped(char),
    /// The field is not selectable for a resource with registered field labels.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// The field is not selectable for a resource that only has metadata fields.
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    UnknownField(String),
}

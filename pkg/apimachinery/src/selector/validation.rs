//! Label key and value syntax (k8s.io/apimachinery/pkg/util/validation),
//! with the upstream message texts, and Go-style rendering of field errors.

/// Label key checks (`IsQualifiedName`), shared with object validation.
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    crate::validation::is_qualified_name(s)
}

/// Label value checks (`IsValidLabelValue`), shared with object validation.
pub(crate) fn label_value(s: &str) -> Vec<String> {
    crate::validation::is_valid_label_value(s)
}

/// Go's `%q` for a string (close enough: Rust's debug escaping).
pub(crate) fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// `field.Invalid(path, value, detail).Error()` for a string value.
pub(crate) fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(value))
}

/// `field.Invalid(path, values, detail).Error()` for a `[]string` value.
pub(crate) fn invalid_list(path: &str, values: &[String], detail: &str) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!(
        "{path}: Invalid value: []string{{{}}}: {detail}",
        quoted.join(", ")
    )
}

/// `ErrorList.ToAggregate().Error()`: one message alone, several in brackets.
pub(crate) fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("A_b.C-1").is_empty());
        assert_eq!(qualified_name("-a").len(), 1);
        assert!(qualified_name("-a")[0].starts_with("name part must consist of"));
        assert_eq!(
            qualified_name("Example.com/x")[0]
                .split(' ')
                .take(3)
                .collect::<Vec<_>>(),
            ["prefix", "part", "a"]
        );
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        let long = "a".repeat(64);
        assert_eq!(
            qualified_name(&long),
            ["name part must be no more than 63 characters"]
        );
        assert_eq!(qualified_name("x/").len(), 2);
    }

    #[test]
    fn label_values() {
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3-a").is_empty());
        assert_eq!(
            label_value("a b"),
            ["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
        );
        assert_eq!(label_value(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn field_error_rendering() {
        assert_eq!(invalid("key", "x", "bad"), "key: Invalid value: \"x\": bad");
        assert_eq!(
            invalid_list("values", &[], "empty"),
            "values: Invalid value: []string{}: empty"
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}

//! Command-line flag parsing in the style of cobra/pflag (`--flag=value`, `--flag value`).

use std::collections::HashMap;

/// Whether a flag takes a value or is a boolean switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `--name` alone means true; a value must be attached with `=`.
    Bool,
    /// Takes a value, attached with `=` or as the next argument.
    Value,
}

/// One accepted flag.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub default: &'static str,
    pub help: &'static str,
}

/// A value flag with a default.
pub const fn value(name: &'static str, default: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        short: None,
        kind: Kind::Value,
        default,
        help,
    }
}

/// A boolean flag with a default.
pub const fn boolean(name: &'static str, default: bool, help: &'static str) -> Spec {
    Spec {
        name,
        short: None,
        kind: Kind::Bool,
        default: if default { "true" } else { "false" },
        help,
    }
}

/// klog's flags: upstream accepts them on every subcommand, so do we (and ignore them).
const LOGGING: &[Spec] = &[
    value("v", "0", ""),
    value("vmodule", "", ""),
    value("log_dir", "", ""),
    value("log_file", "", ""),
    value("log_file_max_size", "1800", ""),
    value("stderrthreshold", "2", ""),
    value("log_backtrace_at", "", ""),
    boolean("logtostderr", true, ""),
    boolean("alsologtostderr", false, ""),
    boolean("add_dir_header", false, ""),
    boolean("skip_headers", false, ""),
    boolean("skip_log_headers", false, ""),
    boolean("one_output", false, ""),
];

/// The outcome of parsing: flag values plus positional arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<String, String>,
    /// Positional (non-flag) arguments in order.
    pub args: Vec<String>,
    /// `-h`/`--help` was given.
    pub help: bool,
}

impl Parsed {
    /// The value of flag `name` (its default when not given).
    pub fn str(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// Flag `name` as an integer.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        let v = self.str(name);
        v.trim().parse::<i64>().map_err(|_| {
            format!("invalid argument {v:?} for \"--{name}\" flag: strconv.ParseInt: parsing {v:?}: invalid syntax")
        })
    }

    /// Flag `name` as a boolean (Go's strconv.ParseBool spellings).
    pub fn bool(&self, name: &str) -> Result<bool, String> {
        parse_bool(self.str(name)).ok_or_else(|| {
            let v = self.str(name);
            format!("invalid argument {v:?} for \"--{name}\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax")
        })
    }
}

/// Go's strconv.ParseBool.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn find<'a>(specs: &'a [Spec], name: &str) -> Option<&'a Spec> {
    specs.iter().chain(LOGGING.iter()).find(|s| s.name == name)
}

fn find_short(specs: &[Spec], c: char) -> Option<&Spec> {
    specs.iter().find(|s| s.short == Some(c))
}

/// Parses `argv` (the arguments after the subcommand) against `specs`.
pub fn parse(specs: &[Spec], argv: &[String]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    for s in specs.iter().chain(LOGGING.iter()) {
        out.values.insert(s.name.to_string(), s.default.to_string());
    }
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            out.args.extend(argv[i..].iter().cloned());
            break;
        }
        if arg == "-h" || arg == "--help" {
            out.help = true;
            continue;
        }
        let (body, long) = if let Some(b) = arg.strip_prefix("--") {
            (b, true)
        } else if let Some(b) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            (b, false)
        } else {
            out.args.push(arg.clone());
            continue;
        };
        let (name, attached) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        // A single dash names a shorthand (`-t 5`, `-t5`, `-t=5`) or,
        // leniently, a long flag (`-port=80`).
        let (spec, attached) = if long {
            (find(specs, name), attached)
        } else {
            let mut chars = name.chars();
            let first = chars.next().unwrap_or('-');
            match find_short(specs, first) {
                Some(s) if name.len() == first.len_utf8() => (Some(s), attached),
                Some(s) if attached.is_none() && s.kind == Kind::Value => {
                    (Some(s), Some(chars.as_str().to_string()))
                }
                _ => (find(specs, name), attached),
            }
        };
        let Some(spec) = spec else {
            let dashes = if long { "--" } else { "-" };
            return Err(format!("unknown flag: {dashes}{name}"));
        };
        let value = match (spec.kind, attached) {
            (_, Some(v)) => v,
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Value, None) => {
                let Some(v) = argv.get(i) else {
                    return Err(format!("flag needs an argument: --{}", spec.name));
                };
                i += 1;
                v.clone()
            }
        };
        if spec.kind == Kind::Bool && parse_bool(&value).is_none() {
            return Err(format!(
                "invalid argument {value:?} for \"--{}\" flag: strconv.ParseBool: parsing {value:?}: invalid syntax",
                spec.name
            ));
        }
        out.values.insert(spec.name.to_string(), value);
    }
    Ok(out)
}

/// The help text for a subcommand.
pub fn usage(command: &str, about: &str, specs: &[Spec]) -> String {
    let mut s = format!("{about}\n\nUsage:\n  rkube-testhelper {command} [flags]\n\nFlags:\n");
    for spec in specs {
        let short = spec.short.map(|c| format!("-{c}, ")).unwrap_or_default();
        let default =
            if spec.default.is_empty() || spec.kind == Kind::Bool && spec.default == "false" {
                String::new()
            } else {
                format!(" (default {})", spec.default)
            };
        s.push_str(&format!(
            "      {short}--{:<26} {}{default}\n",
            spec.name, spec.help
        ));
    }
    s.push_str("  -h, --help                       help for this command\n");
    s
}

/// Parses flags for a subcommand, handling `--help` and errors (exit 0 / exit 2).
pub fn parse_or_exit(command: &str, about: &str, specs: &[Spec], argv: &[String]) -> Parsed {
    match parse(specs, argv) {
        Ok(p) if p.help => {
            print!("{}", usage(command, about, specs));
            std::process::exit(0);
        }
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e}");
            eprint!("{}", usage(command, about, specs));
            std::process::exit(2);
        }
    }
}

/// Reads an integer flag or exits 2 with the parse error.
pub fn int_or_exit(p: &Parsed, name: &str) -> i64 {
    p.int(name).unwrap_or_else(|e| {
        eprintln!("Error: {e}");
        std::process::exit(2)
    })
}

/// Reads a boolean flag or exits 2 with the parse error.
pub fn bool_or_exit(p: &Parsed, name: &str) -> bool {
    p.bool(name).unwrap_or_else(|e| {
        eprintln!("Error: {e}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        value("port", "8080", "port"),
        boolean("close", false, "close"),
        boolean("http", true, "http"),
        Spec {
            name: "log-lines-total",
            short: Some('t'),
            kind: Kind::Value,
            default: "0",
            help: "",
        },
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_apply() {
        let p = parse(SPECS, &[]).unwrap();
        assert_eq!(p.int("port").unwrap(), 8080);
        assert!(!p.bool("close").unwrap());
        assert!(p.bool("http").unwrap());
    }

    #[test]
    fn equals_and_space_forms() {
        let p = parse(SPECS, &args(&["--port=81"])).unwrap();
        assert_eq!(p.str("port"), "81");
        let p = parse(SPECS, &args(&["--port", "82", "rest"])).unwrap();
        assert_eq!(p.str("port"), "82");
        assert_eq!(p.args, vec!["rest"]);
    }

    #[test]
    fn booleans_do_not_take_the_next_argument() {
        let p = parse(SPECS, &args(&["--close", "x", "--http=false"])).unwrap();
        assert!(p.bool("close").unwrap());
        assert!(!p.bool("http").unwrap());
        assert_eq!(p.args, vec!["x"]);
        assert!(parse(SPECS, &args(&["--close=maybe"])).is_err());
    }

    #[test]
    fn shorthands_and_single_dash_long_names() {
        let p = parse(SPECS, &args(&["-t", "5"])).unwrap();
        assert_eq!(p.str("log-lines-total"), "5");
        let p = parse(SPECS, &args(&["-t7"])).unwrap();
        assert_eq!(p.str("log-lines-total"), "7");
        let p = parse(SPECS, &args(&["-port=90"])).unwrap();
        assert_eq!(p.str("port"), "90");
    }

    #[test]
    fn unknown_and_missing_values_are_errors() {
        assert_eq!(
            parse(SPECS, &args(&["--nope=1"])).unwrap_err(),
            "unknown flag: --nope"
        );
        assert!(parse(SPECS, &args(&["--port"])).is_err());
    }

    #[test]
    fn klog_flags_are_accepted() {
        let p = parse(SPECS, &args(&["--v=4", "--logtostderr", "--port", "1"])).unwrap();
        assert_eq!(p.str("port"), "1");
    }

    #[test]
    fn double_dash_ends_flags_and_help_is_noticed() {
        let p = parse(SPECS, &args(&["--", "--port=1"])).unwrap();
        assert_eq!(p.args, vec!["--port=1"]);
        assert!(parse(SPECS, &args(&["-h"])).unwrap().help);
    }
}

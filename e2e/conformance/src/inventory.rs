//! The upstream conformance tests this suite mirrors, from `inventory.tsv`
//! (names and codenames of Kubernetes v1.34's conformance.yaml, with the
//! capability bucket each needs).

use std::sync::OnceLock;

/// One upstream conformance test.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Upstream `testname`.
    pub testname: String,
    /// Upstream `codename` (`[sig-x] ... [Conformance]`).
    pub codename: String,
    /// SIG, e.g. `apps`.
    pub sig: String,
    /// Capability bucket: API, POD, CTRL, SVC, DNS, WH, AGG, NET, STOR, KUBECTL.
    pub bucket: String,
    /// Runs on a single node.
    pub one_node: bool,
    /// Serial, Disruptive, Slow, LinuxOnly.
    pub tags: Vec<String>,
    /// Upstream release that made it conformance.
    pub release: String,
    /// Upstream e2e source file.
    pub file: String,
}

impl Entry {
    /// `[Serial]` or `[Disruptive]`: not run alongside other tests.
    pub fn serial(&self) -> bool {
        self.tags.iter().any(|t| t == "Serial" || t == "Disruptive")
    }

    /// Part of the conformance-lite set: one node, not serial.
    pub fn lite(&self) -> bool {
        self.one_node && !self.serial()
    }
}

const TSV: &str = include_str!("../inventory.tsv");

/// Parses the inventory text (header line, then tab-separated rows).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("").trim().to_string();
            Entry {
                testname: get(0),
                codename: get(1),
                sig: get(2),
                bucket: get(3),
                one_node: get(4) != "N",
                tags: get(5)
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect(),
                release: get(6),
                file: get(7),
            }
        })
        .collect()
}

/// Every upstream conformance test, in upstream order.
pub fn all() -> &'static [Entry] {
    static ALL: OnceLock<Vec<Entry>> = OnceLock::new();
    ALL.get_or_init(|| parse(TSV))
}

/// The first entry whose testname or codename is `name`. Upstream gives a
/// few testnames to more than one test (e.g. `EndpointSlice API`); the
/// codename always tells them apart.
pub fn find(name: &str) -> Option<&'static Entry> {
    all()
        .iter()
        .find(|e| e.testname == name || e.codename == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_tags() {
        let e = parse(
            "testname\tcodename\tsig\tbucket\tone_node\ttags\trelease\tfile\n\
             A\t[sig-apps] a [Serial] [Conformance]\tapps\tCTRL\tY\tSerial,Slow\tv1.9\tx.go\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].serial() && !e[0].lite());
        assert_eq!(e[0].tags, ["Serial", "Slow"]);
    }

    #[test]
    fn the_inventory_has_every_test_once() {
        let all = all();
        assert_eq!(all.len(), 424);
        let mut names: Vec<&str> = all.iter().map(|e| e.codename.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 424, "codenames are unique");
        assert_eq!(all.iter().filter(|e| e.lite()).count(), 394);
    }
}

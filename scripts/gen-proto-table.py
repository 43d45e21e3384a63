#!/usr/bin/env python3
"""Generate pkg/protobuf/src/table.json, the schema table of rkube-protobuf.

Structure (messages, field tags, wire kinds, message types) comes from the
prost-generated sources of the `k8s-pb` crate. Exact JSON field names, inline
(embedded) fields and Go pointer/omitempty information come from the Go API
types (`protobuf:"..."` and `json:"..."` struct tags) of the matching
Kubernetes staging repositories, read straight from git (read-only).

Usage:
  scripts/gen-proto-table.py [--k8s-pb DIR] [--go-rev v0.35.0] \
      [--go-git api=/work/.mirror/kubernetes+api/repo ...] [--out FILE]

Defaults: k8s-pb 0.9.0 from ~/.cargo/registry, the four Kubernetes mirrors
under /work/.mirror, tag v0.35.0 (Kubernetes 1.35, what k8s-pb 0.9 was
generated from). Fields without Go information fall back to lowerCamelCase.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

# k8s-pb top-level module -> (Go repository key, path prefix inside that repo).
GO_REPOS = {
    "api": ("api", ""),
    "apimachinery": ("apimachinery", ""),
    "apiextensions_apiserver": ("apiextensions-apiserver", ""),
    "kube_aggregator": ("kube-aggregator", ""),
}
DEFAULT_GIT = {
    "api": "/work/.mirror/kubernetes+api/repo",
    "apimachinery": "/work/.mirror/kubernetes+apimachinery/repo",
    "apiextensions-apiserver": "/work/.mirror/kubernetes+apiextensions-apiserver/repo",
    "kube-aggregator": "/work/.mirror/kubernetes+kube-aggregator/repo",
}
# Modules of k8s-pb left out: metrics APIs are served by metrics-server, and
# testapigroup is apimachinery's test fixture.
SKIP = ("metrics", "apimachinery/pkg/apis/testapigroup")

META = "apimachinery.pkg.apis.meta.v1."
# Messages with a non-struct JSON form, decoded specially by the crate.
SPECIAL = {
    META + "Time": "time",
    META + "MicroTime": "microtime",
    META + "Duration": "duration",
    META + "FieldsV1": "rawjson",
    "apimachinery.pkg.runtime.RawExtension": "rawjson",
    "apimachinery.pkg.api.resource.Quantity": "quantity",
    "apimachinery.pkg.util.intstr.IntOrString": "intorstring",
}
for _v in ("v1", "v1beta1"):
    _p = "apiextensions_apiserver.pkg.apis.apiextensions.%s." % _v
    SPECIAL[_p + "Json"] = "rawjson"
    SPECIAL[_p + "JsonSchemaPropsOrArray"] = "schemaorarray"
    SPECIAL[_p + "JsonSchemaPropsOrBool"] = "schemaorbool"
    SPECIAL[_p + "JsonSchemaPropsOrStringArray"] = "schemaorstringarray"

SCALARS = {"string", "bool", "int32", "int64", "double", "bytes"}


class GitTree:
    """Read-only access to one revision of a git repository."""

    def __init__(self, git_dir, rev):
        self.git_dir, self.rev = git_dir, rev
        out = self._git("ls-tree", "-r", "--name-only", rev)
        self.files = set(out.splitlines())

    def _git(self, *args):
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def go_files(self, directory):
        prefix = directory.rstrip("/") + "/"
        for f in sorted(self.files):
            if not f.startswith(prefix) or "/" in f[len(prefix):]:
                continue
            if not f.endswith(".go") or f.endswith("_test.go"):
                continue
            base = os.path.basename(f)
            if base.startswith("zz_generated") or base == "generated.pb.go":
                continue
            yield self._git("show", "%s:%s" % (self.rev, f))


STRUCT_RE = re.compile(r"^type (\w+) struct \{")
SLICE_RE = re.compile(r"^type (\w+) \[\]\S+")
FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")


def parse_go_package(sources):
    """Returns ({struct name: {tag: field info}}, {named slice types})."""
    structs, slices = {}, set()
    for src in sources:
        current = None
        for line in src.splitlines():
            if current is None:
                m = STRUCT_RE.match(line)
                if m:
                    current = structs.setdefault(m.group(1), {})
                    continue
                m = SLICE_RE.match(line)
                if m:
                    slices.add(m.group(1))
                continue
            if line.startswith("}"):
                current = None
                continue
            m = FIELD_RE.match(line)
            if not m:
                continue
            name, gotype, tags = m.groups()
            pb = re.search(r'protobuf:"\w+,(\d+),', tags)
            if not pb:
                continue
            js = re.search(r'json:"([^"]*)"', tags)
            json_parts = (js.group(1) if js else "").split(",")
            json_name = json_parts[0]
            current[int(pb.group(1))] = {
                "json": json_name,
                "inline": "inline" in json_parts[1:] or (name is None and not json_name),
                "omitempty": "omitempty" in json_parts[1:],
                "pointer": gotype.startswith("*"),
                "go_name": name,
            }
    return structs, slices


ATTR_RE = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
DECL_RE = re.compile(r"^\s*pub (?:r#)?(\w+): (.*),$", re.S)


def resolve(type_path, module):
    """Resolves a Rust type path relative to `module` into a dotted name."""
    parts = type_path.replace(" ", "").split("::")
    if len(parts) == 1:
        return ".".join(module + parts)
    base = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        base.pop()
    if parts and parts[0] == "crate":
        parts.pop(0)
        base = []
    return ".".join(base + parts)


def inner_type(rust_type):
    t = rust_type.replace("\n", "").replace(" ", "")
    for wrapper in (
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ):
        if t.startswith(wrapper):
            t = t[len(wrapper):-1].rstrip(",")
    return t


def map_value_type(rust_type):
    t = rust_type.replace("\n", "").replace(" ", "")
    t = t[t.index("<") + 1: t.rindex(">")].rstrip(",")
    return t.split(",", 1)[1]


def parse_k8s_pb(src_dir):
    """Yields (module path list, message name, [(tag, snake name, attrs, rust type)])."""
    for path in sorted(glob.glob(os.path.join(src_dir, "**", "mod.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(path), src_dir)
        if rel == "." or rel.startswith(SKIP):
            continue
        module = rel.split(os.sep)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        i, msg, fields = 0, None, []
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^pub struct (\w+) \{(\})?", line)
            if m and m.group(2):
                yield module, m.group(1), []
            elif m:
                msg, fields = m.group(1), []
            elif msg is not None and line.startswith("}"):
                yield module, msg, fields
                msg = None
            elif msg is not None:
                a = ATTR_RE.match(line)
                if a:
                    decl = ""
                    i += 1
                    while True:
                        decl += lines[i].strip() + " "
                        if decl.count("<") == decl.count(">") and decl.rstrip().endswith(","):
                            break
                        i += 1
                    d = DECL_RE.match(decl.strip())
                    if not d:
                        sys.exit("cannot parse field %r in %s" % (decl, path))
                    attrs = a.group(1)
                    tag = int(re.search(r'tag = "(\d+)"', attrs).group(1))
                    fields.append((tag, d.group(1), attrs, d.group(2)))
            i += 1


def field_type(attrs, rust_type, module):
    m = re.match(r'(?:btree_)?map = "(\w+), (\w+)"', attrs)
    if m:
        key, value = m.groups()
        if value == "message":
            value = "m:" + resolve(map_value_type(rust_type), module)
        return "map:%s,%s" % (key, value), False
    kind = re.match(r"(\w+)", attrs).group(1)
    repeated = re.search(r"\brepeated\b", attrs) is not None
    if kind == "message":
        return "m:" + resolve(inner_type(rust_type), module), repeated
    if kind not in SCALARS:
        sys.exit("unsupported prost kind %r" % attrs)
    return kind, repeated


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k8s-pb", default=None, help="k8s-pb src directory")
    ap.add_argument("--go-rev", default="v0.35.0")
    ap.add_argument("--go-git", action="append", default=[], metavar="REPO=GITDIR")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument(
        "--out", default=os.path.join(here, "..", "pkg", "protobuf", "src", "table.json")
    )
    args = ap.parse_args()

    src = args.k8s_pb
    if src is None:
        found = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0/src"))
        if not found:
            sys.exit("k8s-pb 0.9.0 not found in ~/.cargo/registry; pass --k8s-pb")
        src = found[0]
    gits = dict(DEFAULT_GIT)
    for spec in args.go_git:
        key, _, path = spec.partition("=")
        gits[key] = path
    trees = {key: GitTree(path, args.go_rev) for key, path in gits.items()}

    go_cache = {}

    def go_package(module):
        key = "/".join(module)
        if key not in go_cache:
            repo, prefix = GO_REPOS[module[0]]
            directory = prefix + "/".join(module[1:])
            go_cache[key] = parse_go_package(trees[repo].go_files(directory))
        return go_cache[key]

    messages, fallbacks = {}, []
    for module, name, fields in parse_k8s_pb(src):
        full = ".".join(module + [name])
        structs, slices = go_package(module)
        go_name = next((s for s in list(structs) + sorted(slices) if s.lower() == name.lower()), None)
        go_fields = structs.get(go_name, {}) if go_name else {}
        entry = {"name": go_name or name, "fields": []}
        special = SPECIAL.get(full)
        if special is None and go_name in slices:
            special = "items"
        if special:
            entry["special"] = special
        for tag, snake, attrs, rust_type in fields:
            ftype, repeated = field_type(attrs, rust_type, module)
            flags = "r" if repeated else ""
            go = go_fields.get(tag)
            if go is not None:
                json_name = go["json"] or lower_camel(snake)
                if go["inline"]:
                    flags += "i"
                if go["omitempty"] and not go["pointer"] and ftype in SCALARS and not repeated:
                    flags += "z"
            else:
                json_name = lower_camel(snake)
                if not special:
                    fallbacks.append("%s.%s" % (full, snake))
            entry["fields"].append([tag, json_name, ftype, flags])
        messages[full] = entry

    for full, entry in messages.items():
        for _, _, ftype, _ in entry["fields"]:
            ref = ftype.split("m:", 1)[1] if "m:" in ftype else None
            if ref and ref not in messages:
                sys.exit("%s references unknown message %s" % (full, ref))

    table = {
        "source": "k8s-pb 0.9.0 + Kubernetes Go types %s (scripts/gen-proto-table.py)" % args.go_rev,
        "messages": messages,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(table, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print(
        "wrote %s: %d messages, %d fields, %d without Go info"
        % (args.out, len(messages), sum(len(e["fields"]) for e in messages.values()), len(fallbacks)),
        file=sys.stderr,
    )
    for f in fallbacks:
        print("  fallback name: " + f, file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Import circles between the top-level modules of each crate.

For every crate under crates/, a top-level module `a` is the file src/a.rs (or src/a/mod.rs)
together with everything under src/a/. Module `a` uses module `b` when its code names
`crate::b::…`, `use crate::{b::…}` or an item the crate root re-exports from `b`
(`pub use b::Item;` in lib.rs or main.rs, then `crate::Item`). Comments are ignored, test
code is not: a circle only tests close still ties the modules together.

Prints every elementary circle (at most LIMIT per crate) and exits 1 if any crate has one.
Usage: .ci/module_cycles.py [CRATE_DIR ...]   (default: every crate under crates/)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOTS = ("lib.rs", "main.rs")
LIMIT = 200

COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
GROUP = re.compile(r"\buse\s+crate::\{")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REEXPORT = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([A-Za-z_][A-Za-z0-9_]*)::([^;]*);")


def code(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return COMMENT.sub(" ", STRING.sub('""', text))


def group_heads(text: str, start: int) -> list[str]:
    """The first segment of each path inside the braces opening at `start`, one level deep."""
    depth, heads, expecting = 1, [], True
    i = start
    while i < len(text) and depth:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 1:
            expecting = True
        elif depth == 1 and expecting and not c.isspace():
            m = IDENT.match(text, i)
            if m:
                heads.append(m.group(0))
                i = m.end()
                expecting = False
                continue
        i += 1
    return heads


def names_in(tree: str) -> list[str]:
    """Names a `use` tree brings in: the last segment of each path, or its `as` alias."""
    out = []
    for part in re.split(r"[{},]", tree):
        part = part.strip()
        if not part or part.endswith("::") or part == "*":
            continue
        alias = re.search(r"\bas\s+([A-Za-z_]\w*)$", part)
        out.append(alias.group(1) if alias else part.split("::")[-1])
    return [n for n in out if n != "self"]


def modules(src: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for entry in sorted(src.iterdir()):
        if entry.is_file() and entry.suffix == ".rs" and entry.name not in ROOTS:
            found.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            files = sorted(entry.rglob("*.rs"))
            if files:
                found.setdefault(entry.name, []).extend(files)
    return found


def graph(src: Path) -> dict[str, set[str]]:
    mods = modules(src)
    reexported: dict[str, str] = {}
    for root in ROOTS:
        if (src / root).is_file():
            for head, tree in REEXPORT.findall(code(src / root)):
                if head in mods:
                    for name in names_in(tree):
                        reexported.setdefault(name, head)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, files in mods.items():
        for f in files:
            text = code(f)
            heads = PATH.findall(text)
            for g in GROUP.finditer(text):
                heads.extend(group_heads(text, g.end()))
            for head in heads:
                target = head if head in mods else reexported.get(head)
                if target and target != mod:
                    edges[mod].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Elementary circles, each reported once, starting at its smallest module."""
    order = sorted(edges)
    found: list[list[str]] = []
    for start in order:
        allowed = {m for m in order if m >= start}
        stack = [(start, iter(sorted(edges[start] & allowed)))]
        path, on_path = [start], {start}
        while stack and len(found) < LIMIT:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(path.pop())
            elif nxt == start:
                found.append(path + [start])
            elif nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                stack.append((nxt, iter(sorted(edges[nxt] & allowed))))
    return found


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parent.parent
    crates = [Path(a) for a in argv] or sorted(p for p in (repo / "crates").iterdir() if (p / "src").is_dir())
    failed = False
    for crate in crates:
        found = cycles(graph(crate / "src"))
        if not found:
            print(f"{crate.name}: no circles")
            continue
        failed = True
        more = " (first {LIMIT})" if len(found) >= LIMIT else ""
        print(f"{crate.name}: {len(found)} circle(s){more}")
        for c in found:
            print("  " + " -> ".join(c))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""The README's tables of xjob::parallel_options and xjob::pool_options list
every field, in the order the headers declare them: the order C++20
designated initialisers must follow, which the README tells readers to copy.

Usage: readme_options_test.py README.md parallel_options.hpp process_pool.hpp
"""

import re
import sys


def struct_fields(header, struct):
    """The data members of `struct <struct> {...};` in declaration order."""
    with open(header, encoding="utf-8") as f:
        text = re.sub(r"//[^\n]*", "", f.read())
    m = re.search(r"\bstruct\s+" + struct + r"\s*\{", text)
    if not m:
        sys.exit("readme_options_test: no `struct %s {` in %s" % (struct, header))
    depth, i, start = 1, m.end(), m.end()
    members = []
    while depth > 0:
        c = text[i]
        if c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
        elif c == ";" and depth == 1:
            declaration = re.split(r"=|\{", text[start:i], maxsplit=1)[0]
            words = re.findall(r"\w+", declaration)
            if words and "(" not in declaration.split(words[-1])[-1]:
                members.append(words[-1])
            start = i + 1
        i += 1
    return members


def readme_fields(readme, anchor):
    """The first column of the first `| field |` table after the first line
    that starts with `anchor`."""
    with open(readme, encoding="utf-8") as f:
        lines = f.read().split("\n")
    try:
        at = next(i for i, l in enumerate(lines) if l.startswith(anchor))
        head = next(i for i in range(at, len(lines)) if lines[i].startswith("| field |"))
    except StopIteration:
        sys.exit("readme_options_test: no `| field |` table after %r in %s" % (anchor, readme))
    fields = []
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        m = re.match(r"\|\s*`(\w+)`", line)
        fields.append(m.group(1) if m else line)
    return fields


def main(readme, parallel_options_hpp, process_pool_hpp):
    failures = 0
    for struct, header, anchor in (("parallel_options", parallel_options_hpp, "`xjob::parallel_options`"),
                                   ("pool_options", process_pool_hpp, "`xjob::pool_options`")):
        declared = struct_fields(header, struct)
        listed = readme_fields(readme, anchor)
        if declared == listed:
            print("%s: the README lists its %d fields in declaration order" % (struct, len(declared)))
        else:
            failures += 1
            print("%s: the README's table (after %s) lists\n  %s\nbut %s declares, in this order,\n  %s" %
                  (struct, anchor, " ".join(listed), header, " ".join(declared)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

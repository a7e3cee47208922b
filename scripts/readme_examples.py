#!/usr/bin/env python3
"""Extracts the C++ blocks of a README as programs that compile and run.

Usage:
  scripts/readme_examples.py README.md OUTDIR [--combined FILE]
  scripts/readme_examples.py README.md --combined FILE
  (--quiet: print errors only)

Every fenced block whose info string is `cpp` or `c++` is a C++ block; they
are numbered 01, 02, ... in README order. For each one this writes
OUTDIR/readme_NN.cc, a complete program that builds on its own against xjob
(removing readme_NN.cc files left from an earlier run), and prints one line
per file with four tab-separated fields:

  OUTDIR/readme_NN.cc  README.md:LINE  fragment|complete  run|compile-only

(LINE is the fence's line). With --combined it also writes FILE, one program
holding every block, each in its own namespace, whose main runs them in order
(what `bazel test //tests/readme:all` builds). A README without C++ blocks is
an error (exit status 1), as is a marker that is misspelt or not on the line
just before a C++ fence.

Markers, each on the line just before the fence (HTML comments, so a reader
of the rendered README does not see them; say why in the text nearby):
  <!-- readme: no-compile -->    not extracted (a block that shows an error on
                                 purpose); its number is skipped.
  <!-- readme: compile-only -->  compiled and linked, never run (a block that
                                 would run long or needs what a test lacks).
                                 Its main does not call the block.
Text after the marker's word is a free-form reason.

The harness. A block with `int main` is a complete program and is written as
it is (in the combined file: in its own namespace, main renamed and given a
`return 0;`); it must include what it uses. Any other block is a fragment,
completed so:
  1. `#include` lines of the block come first, then the prelude: the standard
     headers listed in STD_HEADERS and, unless the block includes an
     <xjob/...> header itself, <xjob/xjob.hpp> and the xtensor headers in
     XTENSOR_HEADERS. A fragment that shows its includes is thus compiled with
     only those (and the standard library), as a reader would.
  2. The block is split in two at the end of its last definition of a
     function, type, template or namespace: everything up to there goes at
     namespace scope (with any variables declared before it, so functions
     can use them), everything after goes inside main, in an inner scope.
     So: definitions first, statements after.
  3. main first calls xjob::init(argc, argv) (so spawn and forkserver work),
     changes to $TEST_TMPDIR when that is set (so files a block writes land
     in the test's own directory), then declares the names below that the
     block uses without declaring them itself, and runs the block.
Names a fragment may use without defining (those the README's tour defines):
  x    xt::xtensor<double, 2> of shape {1000, 16}, values in [1, 13]
  par  xjob::parallel({.n_jobs = 2, .backend = "threads"})
`#line` directives make compiler errors point at README lines.

A limit of the combined file: a block's code sits in namespace readme_NN
there, so a block that must declare something in another namespace (an
explicit specialisation such as xjob::in_process_only<T>) compiles on its own
but not combined; such a block needs <!-- readme: no-compile -->.
"""

import argparse
import os
import re
import sys

STD_HEADERS = [
    "algorithm", "array", "bit", "chrono", "cmath", "cstddef", "cstdint", "cstdio", "cstdlib", "filesystem",
    "fstream", "functional", "iostream", "map", "memory", "numeric", "optional", "ranges", "string",
    "thread", "tuple", "utility", "vector",
]
XTENSOR_HEADERS = [
    "xtensor/xarray.hpp", "xtensor/xmath.hpp", "xtensor/xrandom.hpp", "xtensor/xtensor.hpp",
    "xtensor/xview.hpp",
]

HARNESS_NAMES = {
    # name: (declaration, headers it needs when the block brings its own)
    "x": ("xt::xtensor<double, 2> x = readme_harness::example_array();", ["xtensor/xtensor.hpp"]),
    "par": ('xjob::parallel par({.n_jobs = 2, .backend = "threads"});', ["xjob/parallel.hpp"]),
}

MARKER_RE = re.compile(r"^\s*<!--\s*readme:\s*([\w-]*)(.*?)-->\s*$")
ANY_MARKER_RE = re.compile(r"^\s*<!--\s*readme:")  # a marker line (not a mention in a paragraph)
FENCE_RE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})\s*([^\s`]*)")
INCLUDE_RE = re.compile(r"^\s*#\s*include\b")
MAIN_RE = re.compile(r"\bint\s+main\s*\(")
MARKERS = ("no-compile", "compile-only")


class ReadmeError(Exception):
    pass


class Block:
    def __init__(self, number, line, code, marker):
        self.number = number  # 1-based among the C++ blocks
        self.line = line  # the fence's line, 1-based
        self.code = code  # the lines between the fences, newline-terminated
        self.marker = marker  # None, "no-compile" or "compile-only"

    @property
    def name(self):
        return "readme_%02d" % self.number

    @property
    def first_code_line(self):
        return self.line + 1


# ---------------------------------------------------------------- reading


def read_blocks(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    used_markers = set()
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).lower()
        start = i
        body = []
        i += 1
        while i < len(lines):
            close = re.match(r"^\s{0,3}(" + re.escape(fence[0]) + r"{%d,})\s*$" % len(fence), lines[i])
            if close:
                break
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        else:
            if info in ("cpp", "c++"):
                raise ReadmeError("%s:%d: this ```%s block is never closed" % (path, start + 1, info))
        i += 1
        if info not in ("cpp", "c++"):
            continue
        marker = None
        if start > 0:
            mm = MARKER_RE.match(lines[start - 1])
            if mm:
                if mm.group(1) not in MARKERS:
                    raise ReadmeError("%s:%d: unknown marker %r: use <!-- readme: no-compile --> or "
                                      "<!-- readme: compile-only -->" % (path, start, lines[start - 1].strip()))
                marker = mm.group(1)
                used_markers.add(start - 1)
        blocks.append(Block(len(blocks) + 1, start + 1, "".join(l + "\n" for l in body), marker))
    for n, line in enumerate(lines):
        if ANY_MARKER_RE.search(line) and n not in used_markers:
            raise ReadmeError("%s:%d: a readme marker must be alone on the line just before a ```cpp "
                              "fence, and be <!-- readme: no-compile --> or <!-- readme: compile-only -->"
                              % (path, n + 1))
    if not blocks:
        raise ReadmeError("%s: no ```cpp or ```c++ blocks found: nothing to extract "
                          "(is this the right file?)" % path)
    return blocks


# ---------------------------------------------------------------- lexing

IDENT = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def mask(code):
    """The code with comments, string and character literals turned into
    spaces (newlines kept), so offsets stay the same; preprocessor lines are
    kept as they are."""
    out = list(code)
    n = len(code)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    line_start = True
    while i < n:
        c = code[i]
        if line_start and c == "#":
            # A preprocessor line, with its continuations; comments in it are blanked.
            j = i
            while j < n:
                if code[j] == "\n" and code[j - 1] != "\\":
                    break
                if code.startswith("//", j):
                    k = code.find("\n", j)
                    k = n if k < 0 else k
                    blank(j, k)
                    j = k
                    break
                j += 1
            i = j
            continue
        if c == "\n":
            line_start = True
            i += 1
            continue
        if not c.isspace():
            line_start = False
        if code.startswith("//", i):
            j = code.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c == '"':
            k = i
            while k > 0 and code[k - 1] in IDENT:
                k -= 1
            prefix = code[k:i]
            if prefix in ("R", "u8R", "uR", "UR", "LR"):
                paren = code.find("(", i)
                delim = code[i + 1:paren]
                end = code.find(")" + delim + '"', paren)
                j = n if end < 0 else end + len(delim) + 2
            else:
                j = i + 1
                while j < n and code[j] != '"' and code[j] != "\n":
                    j += 2 if code[j] == "\\" else 1
                j = min(j + 1, n)
            blank(i, j)
            i = j
        elif c == "'":
            k = i
            while k > 0 and (code[k - 1] in IDENT or code[k - 1] in ".'"):
                k -= 1
            if k < i and code[k].isdigit():  # a digit separator: 10'000
                i += 1
                continue
            j = i + 1
            while j < n and code[j] != "'" and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            j = min(j + 1, n)
            blank(i, j)
            i = j
        else:
            i += 1
    return "".join(out)


CONTROL = ("if", "else", "for", "while", "do", "switch", "try", "catch", "return", "co_return", "co_await")
TYPE_KEYS = ("struct", "class", "union", "enum")


def strip_template_head(head):
    head = head.strip()
    while head.startswith("template"):
        k = head.find("<")
        if k < 0:
            return head
        depth = 0
        for j in range(k, len(head)):
            if head[j] == "<":
                depth += 1
            elif head[j] == ">":
                depth -= 1
                if depth == 0:
                    head = head[j + 1:].strip()
                    break
        else:
            return head
    return head


def without_groups(text):
    """text with (...) and [...] groups removed."""
    out, depth = [], 0
    for c in text:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0:
            out.append(c)
    return "".join(out)


def first_word(text):
    m = re.match(r"\s*([A-Za-z_]\w*)", text)
    return m.group(1) if m else ""


def braced_kind(head):
    """What a top-level item whose first {...} group just closed is:
    "definition" (a function or namespace: the item ends here), "statement"
    (a compound or control statement: ends here) or "more" (a type
    definition or a brace initialiser: the item goes on to its `;`)."""
    head = strip_template_head(head)
    word = first_word(head)
    if not head:
        return "statement"
    if word in CONTROL:
        return "statement"
    if word in TYPE_KEYS:
        return "more"
    if word in ("namespace", "extern"):
        return "definition"
    flat = without_groups(head)
    if re.search(r"(?<![=!<>])(?<!operator)=(?!=)", flat):
        return "more"  # auto f = [] { ... };  std::vector<int> v = {...};
    if re.search(r"\)\s*((const|noexcept|override|final|mutable|&&?)\s*)*$", head) or "->" in flat:
        return "definition"
    return "more"  # xjob::parallel par{...};


def top_level_items(masked):
    """[(start, end, kind)] of the masked block's top-level items, kind being
    "definition", "preprocessor" or "other"."""
    items = []
    n = len(masked)
    i = 0
    start = None
    first_brace = None
    parens = braces = 0
    while i < n:
        c = masked[i]
        if start is None:
            if c.isspace():
                i += 1
                continue
            start, first_brace = i, None
            if c == "#":
                j = masked.find("\n", i)
                while j > 0 and masked[j - 1] == "\\":
                    j = masked.find("\n", j + 1)
                j = n if j < 0 else j
                items.append((start, j, "preprocessor"))
                start = None
                i = j
                continue
        if c in "([":
            parens += 1
        elif c in ")]":
            parens -= 1
        elif c == "{":
            if parens == 0 and braces == 0 and first_brace is None:
                first_brace = i
            braces += 1
        elif c == "}":
            braces -= 1
            if braces == 0 and parens == 0 and first_brace is not None:
                kind = braced_kind(masked[start:first_brace])
                if kind != "more":
                    items.append((start, i + 1, "definition" if kind == "definition" else "other"))
                    start = None
        elif c == ";" and parens == 0 and braces == 0:
            head = strip_template_head(masked[start:i])
            is_type = first_word(head) in TYPE_KEYS and first_brace is not None
            items.append((start, i + 1, "definition" if is_type else "other"))
            start = None
        i += 1
    if start is not None and masked[start:].strip():
        items.append((start, n, "other"))
    return items


def is_complete_program(block):
    return MAIN_RE.search(mask(block.code)) is not None


def blank_includes(code):
    """(code with its #include lines turned into empty lines, those lines)."""
    kept, includes = [], []
    for line in code.split("\n"):
        if INCLUDE_RE.match(line):
            includes.append(line.strip())
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept), includes


def split_fragment(code):
    """(namespace part, body): the split is at the end of the line that
    ends the block's last definition."""
    masked = mask(code)
    defs = [end for (_, end, kind) in top_level_items(masked) if kind == "definition"]
    if not defs:
        return "", code
    split = code.find("\n", defs[-1])
    split = len(code) if split < 0 else split + 1
    return code[:split], code[split:]


def declares(name, masked):
    """Whether the masked code seems to declare `name` itself (a type or
    `auto` then the name then `=`, `(`, `{` or `;`)."""
    pattern = r"(?<![\w.])(?!(?:return|throw|case|else|do|delete|new|co_return)\b)[\w:]*[\w>][\s&*]+" + \
        re.escape(name) + r"\s*[=({;]"
    return re.search(pattern, masked) is not None


def uses(name, masked):
    return re.search(r"(?<![\w.:>])" + re.escape(name) + r"\b", masked) is not None


def main_body_end(code, masked):
    """Offset of the `}` closing main's body."""
    m = MAIN_RE.search(masked)
    depth = 0
    i = masked.index("(", m.start())
    while True:  # the parameter list
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                break
        i += 1
    i = masked.index("{", i)
    depth = 0
    while i < len(masked):
        if masked[i] == "{":
            depth += 1
        elif masked[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ReadmeError("main's body is not closed")


# ---------------------------------------------------------------- writing


class Writer:
    """Lines of a generated file, with #line directives back to it."""

    def __init__(self, filename):
        self.filename = filename
        self.lines = []

    def add(self, text=""):
        for line in text.split("\n"):
            self.lines.append(line)

    def from_readme(self, readme, first_line, code):
        """Code taken from the README, starting at README line first_line;
        afterwards line numbers refer to this file again."""
        if code.endswith("\n"):
            code = code[:-1]
        self.lines.append('#line %d "%s"' % (first_line, readme))
        self.lines.extend(code.split("\n"))
        self.lines.append('#line %d "%s"' % (len(self.lines) + 2, self.filename))

    def text(self):
        return "\n".join(self.lines) + "\n"


HARNESS_HELPERS = """\
// What the README's fragments are completed with (scripts/readme_examples.py).
namespace readme_harness {

// Runs in $TEST_TMPDIR when it is set, so that files a block writes land in
// the test's own directory.
inline void enter_test_tmpdir() {
  if (char const* dir = std::getenv("TEST_TMPDIR"); dir != nullptr && *dir != '\\0')
    std::filesystem::current_path(dir);
}
%s
}  // namespace readme_harness
"""

EXAMPLE_ARRAY = """
// `x`: the array the README's fragments map, small so that they run fast.
inline xt::xtensor<double, 2> example_array() {
  xt::xtensor<double, 2> a = xt::xtensor<double, 2>::from_shape({1000, 16});
  for (std::size_t i = 0; i < a.size(); ++i) a.flat(i) = 1.0 + static_cast<double>(i % 97) / 8.0;
  return a;
}"""

CALL_MAIN = """
// Calls a complete program's main, with or without its parameters.
template <class Main>
int call_main(Main main_function, int argc, char** argv) {
  if constexpr (std::is_invocable_v<Main, int, char**>) {
    return main_function(argc, argv);
  } else {
    return main_function();
  }
}"""


def include_lines(headers):
    return ["#include <%s>" % h for h in headers]


def harness_declarations(block, body_masked):
    names = [n for n in HARNESS_NAMES if uses(n, body_masked) and not declares(n, mask(block.code))]
    return names


def includes_xjob(includes):
    return any(re.search(r"<xjob/", inc) for inc in includes)


def write_fragment_function(w, readme, block, namespace_part, body, function_header, names):
    """The fragment as namespace-scope code plus a function running its body."""
    if namespace_part.strip():
        w.from_readme(readme, block.first_code_line, namespace_part)
    w.add(function_header)
    for n in names:
        w.add("  [[maybe_unused]] " + HARNESS_NAMES[n][0])
    w.add("  {")
    body_line = block.first_code_line + namespace_part.count("\n")
    w.from_readme(readme, body_line, body)
    w.add("  }")


def standalone_program(readme, block, filename):
    w = Writer(filename)
    complete = is_complete_program(block)
    mode = "compile-only" if block.marker == "compile-only" else "run"
    w.add("// %s: the C++ block at %s line %d, %s, generated by scripts/readme_examples.py." %
          (filename, readme, block.line, "a complete program" if complete else "a fragment completed by its harness"))
    if mode == "compile-only":
        w.add("// compile-only: built, never run (<!-- readme: compile-only --> in the README).")
    w.add("// Do not edit: edit the README.")
    if complete:
        w.from_readme(readme, block.first_code_line, block.code)
        return w.text(), "complete", mode
    code, own_includes = blank_includes(block.code)
    namespace_part, body = split_fragment(code)
    names = harness_declarations(block, mask(body))
    headers = list(STD_HEADERS)
    if includes_xjob(own_includes):
        for n in names:
            headers += [h for h in HARNESS_NAMES[n][1] if h not in headers]
        headers.append("xjob/init.hpp")
    else:
        headers += XTENSOR_HEADERS + ["xjob/xjob.hpp"]
    w.add("")
    for inc in own_includes:
        w.add(inc)
    if own_includes:
        w.add("// The prelude:")
    w.add("\n".join(include_lines(headers)))
    w.add("")
    w.add(HARNESS_HELPERS % (EXAMPLE_ARRAY if "x" in names else ""))
    if mode == "run":
        header = ("int main(int argc, char** argv) {\n"
                  "  xjob::init(argc, argv);  // first, as spawn and forkserver need\n"
                  "  readme_harness::enter_test_tmpdir();")
        write_fragment_function(w, readme, block, namespace_part, body, header, names)
        w.add("}")
    else:
        write_fragment_function(w, readme, block, namespace_part, body, "void readme_block() {", names)
        w.add("}")
        w.add("")
        w.add("int main() {}  // compile-only: the block is not run")
    return w.text(), "fragment", mode


def combined_program(readme, blocks, filename):
    w = Writer(filename)
    w.add("// %s: every C++ block of %s as one program, generated by scripts/readme_examples.py." %
          (filename, readme))
    w.add("// Each block lives in namespace readme_NN; main runs them in README order.")
    w.add("// Do not edit: edit the README.")
    w.add("")
    prepared = []
    hoisted = []
    for block in blocks:
        if block.marker == "no-compile":
            continue
        code, own_includes = blank_includes(block.code)
        hoisted += [inc for inc in own_includes if inc not in hoisted]
        prepared.append((block, code))
    headers = ["type_traits"] + STD_HEADERS + ["exception"] + XTENSOR_HEADERS + ["xjob/xjob.hpp"]
    w.add("\n".join(include_lines(sorted(set(headers), key=headers.index))))
    w.add("\n".join(inc for inc in hoisted))
    w.add("")
    w.add(HARNESS_HELPERS % (EXAMPLE_ARRAY + "\n" + CALL_MAIN))
    table = []
    for block, code in prepared:
        w.add("")
        w.add("// %s line %d" % (readme, block.line))
        w.add("namespace %s {" % block.name)
        if is_complete_program(block):
            masked = mask(code)
            end = main_body_end(code, masked)
            code = code[:end] + "return 0; " + code[end:]  # main's implicit return, kept on its line
            m = MAIN_RE.search(mask(code))
            code = code[:m.start()] + "int readme_main(" + code[m.end():]
            w.from_readme(readme, block.first_code_line, code)
            w.add("int run(int argc, char** argv) { return readme_harness::call_main(readme_main, argc, argv); }")
            kind = "complete"
        else:
            namespace_part, body = split_fragment(code)
            names = harness_declarations(block, mask(body))
            write_fragment_function(w, readme, block, namespace_part, body,
                                    "int run([[maybe_unused]] int argc, [[maybe_unused]] char** argv) {", names)
            w.add("  return 0;")
            w.add("}")
            kind = "fragment"
        w.add("}  // namespace %s" % block.name)
        table.append('    {"%s", "%s:%d", "%s", %s, %s::run},' %
                     (block.name, readme, block.line, kind,
                      "false" if block.marker == "compile-only" else "true", block.name))
    w.add("")
    w.add("""\
int main(int argc, char** argv) {
  xjob::init(argc, argv);  // first: the blocks' spawned workers start this program
  readme_harness::enter_test_tmpdir();
  struct block {
    char const* name;
    char const* where;
    char const* kind;
    bool run;
    int (*function)(int, char**);
  };
  block const blocks[] = {""")
    w.add("\n".join(table))
    w.add("""\
  };
  int failed = 0;
  int ran = 0;
  for (block const& b : blocks) {
    if (!b.run) {
      std::printf("== %s (%s, %s): compiled, not run (compile-only)\\n", b.name, b.where, b.kind);
      continue;
    }
    std::printf("== %s (%s, %s)\\n", b.name, b.where, b.kind);
    std::fflush(stdout);
    ++ran;
    try {
      int const status = b.function(argc, argv);
      std::fflush(stdout);
      if (status != 0) {
        std::printf("FAILED: %s (%s) returned %d\\n", b.name, b.where, status);
        ++failed;
      }
    } catch (std::exception const& e) {
      std::fflush(stdout);
      std::printf("FAILED: %s (%s) threw: %s\\n", b.name, b.where, e.what());
      ++failed;
    }
  }
  std::printf("%d README blocks ran, %d failed\\n", ran, failed);
  return failed == 0 ? 0 : 1;
}""")
    return w.text()


def main(argv):
    parser = argparse.ArgumentParser(
        description="Extract the C++ blocks of a README as programs (see the top of this script).")
    parser.add_argument("readme")
    parser.add_argument("outdir", nargs="?", help="where readme_NN.cc go")
    parser.add_argument("--combined", metavar="FILE", help="also write every block as one program")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    args = parser.parse_args(argv)
    if args.outdir is None and args.combined is None:
        parser.error("give OUTDIR, --combined FILE, or both")
    try:
        blocks = read_blocks(args.readme)
        readme = args.readme
        if args.outdir is not None:
            os.makedirs(args.outdir, exist_ok=True)
            for old in os.listdir(args.outdir):
                if re.fullmatch(r"readme_\d+\.cc", old):
                    os.remove(os.path.join(args.outdir, old))
            for block in blocks:
                if block.marker == "no-compile":
                    continue
                filename = block.name + ".cc"
                text, kind, mode = standalone_program(readme, block, filename)
                path = os.path.join(args.outdir, filename)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                if not args.quiet:
                    print("%s\t%s:%d\t%s\t%s" % (path, readme, block.line, kind, mode))
        if args.combined is not None:
            text = combined_program(readme, blocks, os.path.basename(args.combined))
            with open(args.combined, "w", encoding="utf-8") as f:
                f.write(text)
    except ReadmeError as e:
        print("readme_examples.py: " + str(e), file=sys.stderr)
        return 1
    if args.quiet:
        return 0
    complete = sum(1 for b in blocks if b.marker != "no-compile" and is_complete_program(b))
    skipped = [b for b in blocks if b.marker == "no-compile"]
    compile_only = sum(1 for b in blocks if b.marker == "compile-only")
    print("%s: %d C++ blocks: %d fragments, %d complete programs, %d compile-only, %d not compiled%s" %
          (args.readme, len(blocks), len(blocks) - len(skipped) - complete, complete, compile_only, len(skipped),
           "".join(" (line %d)" % b.line for b in skipped)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

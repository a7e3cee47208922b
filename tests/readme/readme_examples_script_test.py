#!/usr/bin/env python3
"""Tests of scripts/readme_examples.py (its path is argv[1]) on small
READMEs: which blocks it takes, how it completes fragments, its markers and
its errors. Only the text it writes is checked; //tests/readme:readme_test
compiles and runs what it makes of the real README."""

import os
import re
import subprocess
import sys
import tempfile
import unittest

SCRIPT = None


def run(readme_text, *extra):
    """(exit status, stdout, stderr, {file name: text}) of the script on a README."""
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    readme = os.path.join(tmp, "README.md")
    with open(readme, "w", encoding="utf-8") as f:
        f.write(readme_text)
    out = os.path.join(tmp, "out")
    combined = os.path.join(tmp, "all.cc")
    p = subprocess.run([sys.executable, SCRIPT, readme, out, "--combined", combined, *extra],
                       capture_output=True, text=True)
    files = {}
    if os.path.isdir(out):
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                files[name] = f.read()
    if os.path.exists(combined):
        with open(combined, encoding="utf-8") as f:
            files["all.cc"] = f.read()
    return p.returncode, p.stdout, p.stderr, files


def main_body(text):
    return text[text.index("int main("):]


README = """\
# demo

```sh
echo not C++
```

```cpp
int twice(int i) { return 2 * i; }      // a definition: namespace scope
std::vector<int> v = {1, 2, 3};
auto n = twice(static_cast<int>(v.size()));
```

<!-- readme: no-compile (shows an error on purpose) -->
```cpp
this is not C++;
```

```c++
#include <cstdio>

int main() { std::puts("hello"); }
```

<!-- readme: compile-only -->
```cpp
std::this_thread::sleep_for(std::chrono::hours(1));
```
"""


class Extraction(unittest.TestCase):
    def test_blocks_files_and_listing(self):
        status, out, err, files = run(README)
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(files), ["all.cc", "readme_01.cc", "readme_03.cc", "readme_04.cc"])
        lines = [l.split("\t") for l in out.strip().split("\n")]
        self.assertEqual([(os.path.basename(l[0]), l[1].split(":")[-1], l[2], l[3]) for l in lines],
                         [("readme_01.cc", "7", "fragment", "run"),
                          ("readme_03.cc", "18", "complete", "run"),
                          ("readme_04.cc", "25", "fragment", "compile-only")])
        self.assertIn("4 C++ blocks: 2 fragments, 1 complete programs, 1 compile-only, 1 not compiled (line 14)", err)

    def test_fragment_split_at_last_definition(self):
        _, _, _, files = run(README)
        text = files["readme_01.cc"]
        before_main, body = text[:text.index("int main(")], main_body(text)
        self.assertIn("int twice(int i)", before_main)
        self.assertIn("std::vector<int> v", body)
        self.assertIn("xjob::init(argc, argv);", body)
        self.assertIn("#include <xjob/xjob.hpp>", text)
        self.assertRegex(text, r'#line 8 "[^"]*README.md"\nint twice')

    def test_complete_program_as_it_is(self):
        _, _, _, files = run(README)
        text = files["readme_03.cc"]
        self.assertIn('#include <cstdio>\n\nint main() { std::puts("hello"); }', text)
        self.assertNotIn("#include <xjob", text)
        self.assertNotIn("readme_harness", text)

    def test_compile_only_is_not_run(self):
        _, _, _, files = run(README)
        text = files["readme_04.cc"]
        self.assertIn("void readme_block() {", text)
        self.assertIn("int main() {}", text)
        self.assertRegex(files["all.cc"], r'\{"readme_04", "[^"]*README.md:25", "fragment", false, readme_04::run\}')
        self.assertRegex(files["all.cc"], r'\{"readme_01", "[^"]*README.md:7", "fragment", true, readme_01::run\}')

    def test_combined_renames_main_and_keeps_its_return(self):
        _, _, _, files = run(README)
        text = files["all.cc"]
        self.assertIn('int readme_main() { std::puts("hello"); return 0; }', text)
        self.assertIn("namespace readme_03 {", text)
        self.assertNotIn("readme_02", text)
        self.assertIn("#include <cstdio>", text[:text.index("namespace readme_harness")])

    def test_stale_files_are_removed(self):
        tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        for name in ("readme_09.cc", "keep.txt"):
            open(os.path.join(out, name), "w").close()
        readme = os.path.join(tmp, "README.md")
        with open(readme, "w") as f:
            f.write("```cpp\nint i = 0;\n```\n")
        subprocess.run([sys.executable, SCRIPT, readme, out], check=True, capture_output=True)
        self.assertEqual(sorted(os.listdir(out)), ["keep.txt", "readme_01.cc"])


class Harness(unittest.TestCase):
    def test_names_given_only_when_used_and_not_declared(self):
        _, _, _, files = run("```cpp\nauto y = par.map_chunks(x, f);\n```\n\n"
                             "```cpp\nxt::xtensor<double, 2> x = xt::zeros<double>({2, 2});\nauto s = xt::sum(x);\n```\n\n"
                             "```cpp\nfor (auto [i, v] : par(calls)) use(i);\n```\n")
        first, second, third = (main_body(files["readme_0%d.cc" % i]) for i in (1, 2, 3))
        self.assertIn("xt::xtensor<double, 2> x = readme_harness::example_array();", first)
        self.assertIn('xjob::parallel par({.n_jobs = 2, .backend = "threads"});', first)
        self.assertNotIn("readme_harness::example_array();", second)
        self.assertNotIn("xjob::parallel par(", second)
        self.assertIn("xjob::parallel par(", third)  # `: par(` is a use, not a declaration

    def test_own_xjob_include_means_no_xjob_prelude(self):
        _, _, _, files = run("```cpp\n#include <xjob/parallel.hpp>\nauto v = xjob::parallel(2).map(f, r);\n```\n")
        text = files["readme_01.cc"]
        self.assertIn("#include <xjob/parallel.hpp>", text)
        self.assertNotIn("#include <xjob/xjob.hpp>", text)
        self.assertNotIn("#include <xtensor/", text)

    def test_lexer_is_not_fooled(self):
        # Braces and semicolons in strings, characters and comments, digit
        # separators, lambdas and brace initialisers are not definitions.
        code = ("struct s { int a; };\n"
                "auto f = [](int i) { return i; };\n"
                "std::string t = \"} int g() {\"; char c = '}'; // int h() {\n"
                "long big = 10'000'000;\n"
                "for (int i = 0; i < 2; ++i) { big += i; }\n"
                "xjob::parallel p{};\n")
        _, _, _, files = run("```cpp\n" + code + "```\n")
        text = files["readme_01.cc"]
        before_main = text[:text.index("int main(")]
        self.assertIn("struct s { int a; };", before_main)
        self.assertNotIn("auto f", before_main)
        self.assertIn("auto f = [](int i)", main_body(text))

    def test_definitions_after_statements_move_them_too(self):
        _, _, _, files = run("```cpp\nstd::vector<double> w;\nvoid load() { w.assign(3, 1.0); }\nload();\n```\n")
        text = files["readme_01.cc"]
        self.assertIn("std::vector<double> w;\nvoid load()", text[:text.index("int main(")])
        self.assertIn("load();", main_body(text))


class Errors(unittest.TestCase):
    def test_no_cpp_blocks(self):
        status, out, err, files = run("# title\n\n```sh\nls\n```\n")
        self.assertEqual(status, 1)
        self.assertIn("no ```cpp or ```c++ blocks found", err)
        self.assertNotIn("readme_01.cc", files)

    def test_marker_must_be_on_the_line_before(self):
        status, _, err, _ = run("<!-- readme: no-compile -->\n\n```cpp\nint i;\n```\n")
        self.assertEqual(status, 1)
        self.assertRegex(err, r"README.md:1: a readme marker must be alone on the line just before")

    def test_markers_mentioned_in_text_are_not_markers(self):
        status, _, err, _ = run("Use `<!-- readme: no-compile -->` sparingly.\n\n```cpp\nint i;\n```\n")
        self.assertEqual(status, 0, err)

    def test_unknown_marker(self):
        status, _, err, _ = run("<!-- readme: skip -->\n```cpp\nint i;\n```\n")
        self.assertEqual(status, 1)
        self.assertIn("unknown marker", err)

    def test_unclosed_block(self):
        status, _, err, _ = run("text\n```cpp\nint i;\n")
        self.assertEqual(status, 1)
        self.assertRegex(err, r"README.md:2: this ```cpp block is never closed")


if __name__ == "__main__":
    SCRIPT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

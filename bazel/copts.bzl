"""Compiler flags for xjob's own code, set once here (house rule 9)."""

# Warnings are errors in our code only; system headers are -isystem and exempt.
XJOB_WARNINGS = [
    "-Wall",
    "-Wextra",
    "-Wshadow",
    "-Wnon-virtual-dtor",
    "-Wold-style-cast",
    "-Wcast-align",
    "-Woverloaded-virtual",
    "-Wimplicit-fallthrough",
    "-Werror",
    # GCC 12 flags its own AVX-512 intrinsics (`__m512d __Y = __Y;`) once
    # xsimd inlines them into our functions; a known false positive.
    "-Wno-maybe-uninitialized",
]

# -fno-math-errno lets std::sqrt vectorise (errno is never read by numeric
# code); without it an elementwise sqrt map runs at a fifth of memory speed.
XJOB_COPTS = XJOB_WARNINGS + [
    "-fno-math-errno",
    "-pthread",
]

XJOB_LINKOPTS = ["-pthread", "-ldl"]

# Tests and examples: the same, plus Catch2's macros trip -Wshadow.
XJOB_TEST_COPTS = XJOB_COPTS

// What xjob needs of the compiler, checked first by every public header so
// that a mistake in the build gives one error that says what to do instead of
// hundreds from the code after it.
#pragma once

// C++20. GCC goes on after an #error, and every line of xjob after it would
// add errors of its own (285 for <xjob/parallel.hpp> under -std=c++17); an
// #include that cannot be found is fatal, so the compiler stops right after
// the #error and the user sees it and one line saying why it stopped.
#if !defined(__cplusplus) || __cplusplus < 202002L
#error "xjob needs C++20: compile with -std=c++20 (or -std=gnu++20); in CMake set(CMAKE_CXX_STANDARD 20) or link xjob::xjob; in Bazel build with --cxxopt=-std=c++20"
#include <compilation stops here: xjob needs C++20, see the #error above>
#endif

// xjob's version, as numbers for the preprocessor and as a string; the same
// version is in the CMake package (xjobConfigVersion.cmake) and xjob.pc.
// Needs nothing, throws nothing.
//   #if XJOB_VERSION_MAJOR > 0 || XJOB_VERSION_MINOR >= 2
//   std::printf("xjob %s\n", XJOB_VERSION_STRING);
#pragma once

#include <xjob/detail/config.hpp>

#define XJOB_VERSION_MAJOR 0
#define XJOB_VERSION_MINOR 2
#define XJOB_VERSION_PATCH 0
#define XJOB_VERSION_STRING "0.2.0"

// What the benchmarks share: timing and summaries of interleaved runs, the
// exit on a wrong result, and the elementwise kernel their raw baselines run
// (with ordinary and with streaming stores).
#pragma once

#include <errno.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

namespace xjob::bench {

using clock_type = std::chrono::steady_clock;

// A wrong result: says so and exits with status 1.
[[noreturn]] inline void fail(std::string const& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: FAILED: %s\n", program_invocation_short_name, message.c_str());
  std::exit(1);
}

inline double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Lets spinning idle workers (oneTBB's, libgomp's) go to sleep so that they
// neither steal a CPU from the next measurement nor delay its fork.
inline void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }

struct summary {
  double median = 0;
  double min = 0;
  double max = 0;
};

// Median, min and max; NaN for no values.
inline summary summarize(std::vector<double> values) {
  if (values.empty()) return {std::numeric_limits<double>::quiet_NaN(), 0, 0};
  std::sort(values.begin(), values.end());
  std::size_t const n = values.size();
  double const median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

// The elementwise map every benchmark measures: y = sqrt(x) * 2 + 1.
inline double kernel(double v) { return std::sqrt(v) * 2.0 + 1.0; }

// The hand-written loop every raw baseline runs on its share.
inline void map_range(double const* __restrict in, double* __restrict out, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) out[i] = kernel(in[i]);
}

// The memory-bandwidth ceiling of the maps: a STREAM-style copy with
// ordinary stores, kept a loop (GCC would make it a memcpy call, whose
// non-temporal stores measure something else).
__attribute__((optimize("no-tree-loop-distribute-patterns"))) inline void copy_range(double const* __restrict in,
                                                                                      double* __restrict out,
                                                                                      std::size_t begin,
                                                                                      std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) out[i] = in[i];
}

// The streaming-store baseline: the same map, each full register written
// with a non-temporal store (no read for ownership of the output's lines),
// ordinary stores for the unaligned head and the tail. The same values as
// map_range; the fence makes the stores visible before the caller goes on.
inline void map_range_streaming(double const* __restrict in, double* __restrict out, std::size_t begin, std::size_t end) {
  using batch = xsimd::batch<double>;
  constexpr std::size_t lanes = batch::size;
  std::size_t i = begin;
  while (i < end && reinterpret_cast<std::uintptr_t>(out + i) % (lanes * sizeof(double)) != 0) {
    out[i] = kernel(in[i]);
    ++i;
  }
  for (; i + lanes <= end; i += lanes) {
    batch const v = xsimd::sqrt(batch::load_unaligned(in + i)) * 2.0 + 1.0;
#if defined(__AVX512F__)
    _mm512_stream_pd(out + i, v);
#elif defined(__AVX__)
    _mm256_stream_pd(out + i, v);
#else
    _mm_stream_pd(out + i, v);
#endif
  }
  for (; i < end; ++i) out[i] = kernel(in[i]);
  _mm_sfence();
}

}  // namespace xjob::bench

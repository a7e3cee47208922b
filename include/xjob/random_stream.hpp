// xjob::random_stream: random numbers that depend on a (seed, key) pair
// alone, not on which worker, backend or process draws them, so that a Monte
// Carlo map gives the same bits on every backend and n_jobs.
//
// What: a counter-based engine, Philox4x64-10 from Random123 (Salmon, Moraes,
// Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC11). The
// stream (seed, key) is the Philox bijection keyed by {seed, key} applied to
// the counters {0,0,0,0}, {1,0,0,0}, ...: its i-th block of four 64-bit
// numbers is philox4x64_10({i, 0, 0, 0}, {seed, key}). Streams of different
// (seed, key) pairs are the outputs of differently keyed bijections, which
// the authors found statistically independent: Philox4x64-10 passes TestU01's
// BigCrush for every key and counter pattern they tried, including
// consecutive keys with consecutive counters. Each stream holds 2^64 numbers.
// A UniformRandomBitGenerator (and a RandomNumberEngine's operator==,
// discard), usable with <random>'s distributions and xtensor's xt::random.
//
// Needs: librandom123-dev (Debian), header-only.
// Throws: nothing.
// Thread-safety: a stream is a small value (48 bytes); give each task, row
// or element its own, made where it is used: making one costs nothing.
//
// Example (task i's numbers depend on the seed and i, whoever runs it):
//   std::vector<double> draws = par.map([](int i) {
//     xjob::random_stream g(42, i);
//     return std::normal_distribution<double>()(g);
//   }, std::views::iota(0, 1000));
#pragma once

#include <xjob/detail/config.hpp>

#include <cstdint>
#include <limits>

#include <Random123/philox.h>

namespace xjob {

class random_stream {
 public:
  using result_type = std::uint64_t;

  random_stream(std::uint64_t seed, std::uint64_t key) noexcept : key_{{seed, key}} {}

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  // The next number of the stream.
  result_type operator()() noexcept {
    std::uint64_t const block = position_ / 4;
    if (block != cached_block_) {
      cached_ = r123::Philox4x64()({{block, 0, 0, 0}}, key_);
      cached_block_ = block;
    }
    return cached_.v[position_++ % 4];
  }

  // Skips `count` numbers, in constant time.
  void discard(unsigned long long count) noexcept { position_ += count; }

  [[nodiscard]] std::uint64_t seed() const noexcept { return key_.v[0]; }
  [[nodiscard]] std::uint64_t key() const noexcept { return key_.v[1]; }
  // How many numbers were drawn (or discarded).
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }

  // Equal streams give the same numbers from here on.
  friend bool operator==(random_stream const& a, random_stream const& b) noexcept {
    return a.seed() == b.seed() && a.key() == b.key() && a.position_ == b.position_;
  }

 private:
  static constexpr std::uint64_t no_block = std::numeric_limits<std::uint64_t>::max();  // past the last

  r123::Philox4x64::key_type key_;
  std::uint64_t position_ = 0;
  std::uint64_t cached_block_ = no_block;  // the block in cached_
  r123::Philox4x64::ctr_type cached_{};
};

}  // namespace xjob

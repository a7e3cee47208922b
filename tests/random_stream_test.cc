// xjob::random_stream: Random123's published answer, the standard's engine
// requirements, and numbers that depend on (seed, key) alone.
#include <xjob/random_stream.hpp>

#include <concepts>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include <catch2/catch.hpp>
#include <xtensor/xrandom.hpp>
#include <xtensor/xtensor.hpp>

static_assert(std::uniform_random_bit_generator<xjob::random_stream>);

namespace {

std::vector<std::uint64_t> draw(xjob::random_stream g, std::size_t count) {
  std::vector<std::uint64_t> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(g());
  return out;
}

}  // namespace

TEST_CASE("the stream (0, 0) begins with Random123's known answer for Philox4x64-10") {
  // Random123's kat_vectors: philox4x64 10, counter {0,0,0,0}, key {0,0}.
  std::vector<std::uint64_t> const expected = {0x16554d9eca36314cULL, 0xdb20fe9d672d0fdcULL, 0xd7e772cee186176bULL,
                                               0x7e68b68aec7ba23bULL};
  REQUIRE(draw(xjob::random_stream(0, 0), 4) == expected);
}

TEST_CASE("a stream's numbers depend on its seed and key alone") {
  REQUIRE(draw(xjob::random_stream(42, 7), 1000) == draw(xjob::random_stream(42, 7), 1000));
  std::set<std::vector<std::uint64_t>> const distinct = {
      draw(xjob::random_stream(42, 7), 16), draw(xjob::random_stream(42, 8), 16),
      draw(xjob::random_stream(43, 7), 16), draw(xjob::random_stream(7, 42), 16)};
  REQUIRE(distinct.size() == 4);
}

TEST_CASE("discard skips exactly as drawing does, across block boundaries") {
  for (unsigned long long skip : {0ULL, 1ULL, 3ULL, 4ULL, 5ULL, 1001ULL}) {
    CAPTURE(skip);
    xjob::random_stream drawn(5, 9);
    for (unsigned long long i = 0; i < skip; ++i) (void)drawn();
    xjob::random_stream skipped(5, 9);
    skipped.discard(skip);
    REQUIRE(skipped == drawn);
    REQUIRE(skipped.position() == skip);
    REQUIRE(draw(skipped, 9) == draw(drawn, 9));
  }
  xjob::random_stream a(1, 2), b(1, 2);
  (void)a();
  REQUIRE_FALSE(a == b);
  REQUIRE_FALSE(xjob::random_stream(1, 2) == xjob::random_stream(1, 3));
}

TEST_CASE("a stream serves <random>'s distributions and xtensor's random functions") {
  xjob::random_stream g(3, 4);
  std::normal_distribution<double> normal;
  double sum = 0;
  for (int i = 0; i < 20'000; ++i) sum += normal(g);
  REQUIRE(std::abs(sum / 20'000) < 0.05);  // mean 0, standard error 0.007
  std::uniform_real_distribution<double> unit;
  xjob::random_stream h(3, 4);
  double const first = unit(h);
  REQUIRE((first >= 0.0 && first < 1.0));
  xjob::random_stream e1(11, 0), e2(11, 0);
  xt::xtensor<double, 2> const a = xt::random::randn<double>({8, 8}, 0.0, 1.0, e1);
  xt::xtensor<double, 2> const b = xt::random::randn<double>({8, 8}, 0.0, 1.0, e2);
  REQUIRE(a == b);
  REQUIRE(xt::amax(xt::abs(a))() > 0.0);
}

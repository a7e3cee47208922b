#include <xjob/chunking.hpp>

#include <array>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

namespace {

// The properties every plan must have (house rule 7).
void check_plan(std::size_t extent, std::size_t chunk_extent) {
  xjob::chunk_plan const plan(extent, chunk_extent);
  std::vector<int> seen(extent, 0);
  std::size_t expected_begin = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    xjob::chunk const c = plan[i];
    REQUIRE(c.index == i);
    REQUIRE(c.begin == expected_begin);  // in order, no gap, no overlap
    REQUIRE(c.end <= extent);            // in bounds
    REQUIRE(c.extent() >= 1);
    REQUIRE(c.extent() <= chunk_extent);
    if (i + 1 < plan.size()) REQUIRE(c.extent() == chunk_extent);  // only the last is short
    for (std::size_t k = c.begin; k < c.end; ++k) ++seen[k];
    expected_begin = c.end;
  }
  REQUIRE(expected_begin == extent);
  for (int count : seen) REQUIRE(count == 1);  // exactly once
}

}  // namespace

TEST_CASE("chunk plans cover an extent exactly once, in order, in bounds") {
  check_plan(10, 4);
  check_plan(10, 1);
  check_plan(10, 10);
  check_plan(10, 11);
  check_plan(0, 3);
  check_plan(1, 1);
  std::mt19937_64 random(42);
  for (int trial = 0; trial < 2000; ++trial) {
    std::size_t const extent = random() % 5000;
    std::size_t const chunk_extent = 1 + random() % 700;
    check_plan(extent, chunk_extent);
  }
}

TEST_CASE("chunk plans count chunks as ceil(extent / chunk extent)") {
  REQUIRE(xjob::chunk_plan(10, 4).size() == 3);
  REQUIRE(xjob::chunk_plan(12, 4).size() == 3);
  REQUIRE(xjob::chunk_plan(0, 4).size() == 0);
  REQUIRE(xjob::chunk_plan(10, 4)[2] == xjob::chunk{2, 8, 10});
}

TEST_CASE("a chunk extent of 0 is an error that names the value") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::chunk_plan(10, 0), xjob::invalid_argument, "got 0");
}

TEST_CASE("automatic chunks aim for about 256 KiB of input and enough chunks to balance") {
  // 2^27 doubles in rank 1: 32768 elements = 256 KiB per chunk.
  std::array<std::size_t, 1> const big{std::size_t(1) << 27};
  REQUIRE(xjob::auto_chunk_extent(big, 0, sizeof(double), 2) == 32768);
  // Rows of 16 doubles (128 bytes): 2048 rows per chunk.
  std::array<std::size_t, 2> const rows{std::size_t(1) << 20, 16};
  REQUIRE(xjob::auto_chunk_extent(rows, 0, sizeof(double), 2) == 2048);
  // Along axis 1 of a (16, 2^20) array each slice is 16 doubles too.
  std::array<std::size_t, 2> const cols{16, std::size_t(1) << 20};
  REQUIRE(xjob::auto_chunk_extent(cols, 1, sizeof(double), 2) == 2048);
}

TEST_CASE("automatic chunks give at least four per worker when the array allows") {
  std::mt19937_64 random(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::size_t const extent = 1 + random() % 100000;
    std::size_t const inner = 1 + random() % 300;
    int const workers = 1 + static_cast<int>(random() % 8);
    std::array<std::size_t, 2> const shape{extent, inner};
    std::size_t const c = xjob::auto_chunk_extent(shape, 0, sizeof(float), workers);
    REQUIRE(c >= 1);
    REQUIRE(c <= extent);
    std::size_t const chunks = xjob::chunk_plan(extent, c).size();
    // Cache-line rounding may lose a little, never more than one line's rows.
    std::size_t const per_line = inner * sizeof(float) < 64 && 64 % (inner * sizeof(float)) == 0
                                     ? 64 / (inner * sizeof(float))
                                     : 1;
    if (extent >= 4 * static_cast<std::size_t>(workers) * per_line)
      REQUIRE(chunks >= 4 * static_cast<std::size_t>(workers) / 2);
    // Never far above the byte target.
    REQUIRE((c == 1 || c * inner * sizeof(float) <= 256 * 1024));
  }
}

TEST_CASE("automatic chunks keep boundaries on cache lines for small slices") {
  std::array<std::size_t, 1> const shape{1000003};
  std::size_t const c = xjob::auto_chunk_extent(shape, 0, sizeof(double), 2);
  REQUIRE(c % 8 == 0);  // 8 doubles per 64-byte line
}

TEST_CASE("automatic chunks reject an axis beyond the rank") {
  std::array<std::size_t, 2> const shape{4, 4};
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::auto_chunk_extent(shape, 2, 8, 2), xjob::invalid_argument, "axis 2");
}

// map_chunks beyond the conformance suite: shape-changing outputs, caller
// containers, .npy outputs, strided inputs, bad shapes, recycled memory.
#include <xjob/map_chunks.hpp>

#include <atomic>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xview.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

namespace {
xt::xtensor<double, 2> rows(std::size_t n, std::size_t m) {
  xt::xtensor<double, 2> x = xt::zeros<double>({n, m});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < m; ++j) x(i, j) = static_cast<double>(i * m + j);
  return x;
}
}  // namespace

TEST_CASE("each row reduces to one value in a caller's xtensor") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(1003, 16);
  xt::xtensor<double, 1> sums = xt::zeros<double>({1003});
  par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sum(in, {1}); }, sums, xjob::chunking{.size = 37});
  REQUIRE((sums == xt::sum(x, {1})));
}

TEST_CASE("a chunk may grow: each row doubled into a wider shared_array") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(100, 4);
  xjob::shared_array<double> wide({100, 8});
  par.map_chunks(
      x,
      [](auto const& in, auto&& out) {
        xt::view(out, xt::all(), xt::range(0, 4)) = in;
        xt::view(out, xt::all(), xt::range(4, 8)) = in * 10.0;
      },
      wide);
  auto const v = wide.view<2>();
  REQUIRE(v(57, 2) == x(57, 2));
  REQUIRE(v(57, 6) == x(57, 2) * 10.0);
}

TEST_CASE("a shape mismatch along the axis names both shapes") {
  xjob::parallel par({.n_jobs = 2});
  auto const x = rows(12, 3);
  xt::xtensor<double, 2> out = xt::zeros<double>({10, 3});
  XJOB_REQUIRE_THROWS_WITH_TEXT(par.map_chunks(x, [](auto const& in, auto&& o) { o = in; }, out),
                                xjob::invalid_argument,
                                "output shape (10, 3) does not match input shape (12, 3) along axis 0");
}

TEST_CASE("an axis beyond the rank and a chunk size of 0 are errors naming the value") {
  xjob::parallel par({.n_jobs = 2});
  auto const x = rows(12, 3);
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)par.map_chunks(x, [](auto const& in, auto&& o) { o = in; }, xjob::chunking{.axis = 2}),
      xjob::invalid_argument, "axis 2 is out of range for an input of shape (12, 3)");
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)par.map_chunks(x, [](auto const& in, auto&& o) { o = in; }, xjob::chunking{.size = 0}),
      xjob::invalid_argument, "chunk size must be at least 1, got 0");
}

TEST_CASE("the chunk size option applies to every map_chunks call") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .chunk_size = 5});
  auto const x = rows(23, 2);
  std::atomic<int> chunks{0};
  std::atomic<bool> too_big{false};
  (void)par.map_chunks(x, [&](auto const& in, auto&&) {
    ++chunks;
    if (in.shape()[0] > 5) too_big = true;
  });
  REQUIRE(chunks.load() == 5);
  REQUIRE_FALSE(too_big.load());
}

TEST_CASE("a .npy output is committed when the call succeeds, and not when it fails") {
  xjob::testing::temp_dir dir;
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(64, 3);
  SECTION("success") {
    auto f = xjob::shared_array<double>::create_npy(dir / "out.npy", {64, 3});
    REQUIRE_FALSE(std::filesystem::exists(dir / "out.npy"));
    par.map_chunks(x, [](auto const& in, auto&& out) { out = in * 3.0; }, f);
    REQUIRE(std::filesystem::exists(dir / "out.npy"));
    auto const back = xjob::shared_array<double const>::open_npy(dir / "out.npy");
    REQUIRE((back.view() == x * 3.0));
  }
  SECTION("failure leaves nothing that looks complete") {
    {
      auto f = xjob::shared_array<double>::create_npy(dir / "out.npy", {64, 3});
      REQUIRE_THROWS_AS(par.map_chunks(
                            x,
                            [](auto const& in, auto&& out) {
                              if (in(0, 0) > 30.0) throw std::runtime_error("disk gremlin");
                              out = in;
                            },
                            f, xjob::chunking{.size = 4}),
                        xjob::task_error);
      REQUIRE_FALSE(f.committed());
    }
    REQUIRE(std::filesystem::is_empty(dir.path()));  // the partial file is gone too
  }
}

TEST_CASE("inputs may be shared_arrays, so maps chain without copies") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(50, 5);
  auto const doubled = par.map_chunks(x, [](auto const& in, auto&& out) { out = in * 2.0; });
  auto const plus_one = par.map_chunks(doubled, [](auto const& in, auto&& out) { out = in + 1.0; });
  REQUIRE((plus_one.view() == x * 2.0 + 1.0));
}

TEST_CASE("strided inputs and outputs are chunked correctly") {
  xjob::parallel par({.n_jobs = 3, .backend = "threads"});
  auto const x = rows(40, 6);
  auto const every_other_row = xt::strided_view(x, {xt::range(0, 40, 2), xt::all()});
  xt::xtensor<double, 2, xt::layout_type::column_major> out = xt::zeros<double>({20, 6});
  par.map_chunks(every_other_row, [](auto const& in, auto&& o) { o = in + 0.5; }, out, xjob::chunking{.size = 3});
  for (std::size_t i = 0; i < 20; ++i)
    for (std::size_t j = 0; j < 6; ++j) REQUIRE(out(i, j) == x(2 * i, j) + 0.5);
}

TEST_CASE("a fresh output reads as zeros where f does not write, even from recycled memory") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  std::size_t const n = std::size_t(1) << 18;  // 2 MiB of doubles: large enough to be recycled
  {
    xjob::shared_array<double> dirty({n});
    for (double& v : dirty) v = 7.0;
  }
  xt::xtensor<double, 1> const x = xt::ones<double>({n});
  auto const y = par.map_chunks(x, [](auto const&, auto&&) {});
  for (double v : y) REQUIRE(v == 0.0);
}

TEST_CASE("an in-place map keeps xtensor's aliasing-safe assignment") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  xjob::shared_array<double> a({40, 3});
  auto v = a.view<2>();
  for (std::size_t i = 0; i < 40; ++i)
    for (std::size_t j = 0; j < 3; ++j) v(i, j) = static_cast<double>(i * 3 + j);
  // Reversing each chunk's rows reads rows that the same assignment writes:
  // only correct if the input is evaluated before the output is written.
  par.map_chunks(a, [](auto const& in, auto&& out) { out = xt::flip(in, 0); }, a, xjob::chunking{.size = 10});
  for (std::size_t i = 0; i < 40; ++i) {
    std::size_t const chunk_start = i / 10 * 10;
    std::size_t const source = chunk_start + (9 - (i - chunk_start));
    for (std::size_t j = 0; j < 3; ++j) REQUIRE(v(i, j) == static_cast<double>(source * 3 + j));
  }
}

TEST_CASE("chunks of a separate output take expressions, views and fills") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(30, 4);
  auto const y = par.map_chunks(x, [](auto const& in, auto&& out) {
    out.fill(1.0);
    out += in;
    xt::view(out, xt::all(), 0) = xt::view(in, xt::all(), 1);
  });
  auto const v = y.view<2>();
  REQUIRE(v(7, 0) == x(7, 1));
  REQUIRE(v(7, 3) == x(7, 3) + 1.0);
}

TEST_CASE("xt::noalias on an output chunk works as in plain xtensor") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(30, 4);
  auto const y = par.map_chunks(x, [](auto const& in, auto&& out) { xt::noalias(out) = in * 2.0; });
  REQUIRE((y.view() == x * 2.0));
}

TEST_CASE("an output chunk taken by value writes through, along every axis and on every backend") {
  auto const x = rows(40, 6);
  for (char const* backend : {"sequential", "threads", "processes"}) {
    xjob::parallel par({.n_jobs = 2, .backend = backend});
    for (std::size_t axis : {0U, 1U}) {
      INFO(backend << " axis " << axis);
      // `auto out`, a copy of the chunk view: it shares the chunk's memory.
      auto y = par.map_chunks(x, [](auto const& in, auto out) { out = in * 2.0; }, xjob::chunking{.axis = axis});
      REQUIRE((y.view<2>() == x * 2.0));
      REQUIRE(xt::sum(y.view())() == Approx(xt::sum(x)() * 2.0));
      // The same into a caller's strided output (a dense copy per chunk).
      xt::xtensor<double, 2> wide = xt::zeros<double>({40, 12});
      auto every_other = xt::view(wide, xt::all(), xt::range(0, 12, 2));
      par.map_chunks(x, [](auto const& in, auto out) { out = in + 1.0; }, every_other, xjob::chunking{.axis = axis});
      REQUIRE((xt::view(wide, xt::all(), xt::range(0, 12, 2)) == x + 1.0));
      REQUIRE(xt::all(xt::equal(xt::view(wide, xt::all(), xt::range(1, 12, 2)), 0.0)));
    }
  }
}

TEST_CASE("f may name the chunk types: chunk_view of const input and of the output") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto const x = rows(33, 5);
  auto fixed = [](xjob::chunk_view<double const, 2> const& in, xjob::chunk_view<double, 2>& out) { out = in - 1.0; };
  for (std::size_t axis : {0U, 1U}) {
    auto y = par.map_chunks(x, fixed, xjob::chunking{.axis = axis});
    REQUIRE((y.view<2>() == x - 1.0));
  }
  // xt::xarray and shared_array inputs have a rank known at run time.
  xt::xarray<double> const dynamic = x;
  auto any_rank = [](xjob::chunk_view<double const> const& in, xjob::chunk_view<double>& out) { out = -in; };
  auto z = par.map_chunks(dynamic, any_rank);
  REQUIRE((z.view<2>() == -x));
  auto chained = par.map_chunks(z, any_rank);
  REQUIRE((chained.view<2>() == x));
}

TEST_CASE("a cold output (memory nobody touched yet) is written whole on every backend and store kind") {
  // Chunks of 97 rows of 7 doubles start and end inside pages, so the page
  // at each boundary is readied by both workers' chunks.
  auto const x = rows(4099, 7);
  auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };
  xt::xtensor<double, 2> const expected = xt::sqrt(x) * 2.0 + 1.0;
  auto const dir = std::filesystem::temp_directory_path() / ("xjob-cold-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (char const* backend : {"sequential", "threads", "processes"}) {
    for (auto mode : {xjob::streaming_stores::off, xjob::streaming_stores::on, xjob::streaming_stores::automatic}) {
      xjob::parallel par({.n_jobs = 2, .backend = backend, .chunk_size = 97, .streaming = mode});
      INFO(backend << " mode " << static_cast<int>(mode));
      xjob::trim_shared_memory_cache();
      auto const y = par.map_chunks(x, f);
      REQUIRE((y.view<2>() == expected));
      xjob::trim_shared_memory_cache();
      xjob::shared_array<double> into({4099, 7}, xjob::uninitialized);
      par.map_chunks(x, f, into);
      REQUIRE((into.view<2>() == expected));
      auto file = xjob::shared_array<double>::create_npy(dir / "cold.npy", {4099, 7});
      par.map_chunks(x, f, file);
      REQUIRE((xjob::shared_array<double const>::open_npy(dir / "cold.npy").view<2>() == expected));
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a backend whose workers write only shared memory gets a caller's container output staged") {
  xjob::register_backend("staging", [](xjob::backend_settings const&) {
    return std::make_unique<xjob::testing::declaring_backend>(
        xjob::backend_capabilities{.outputs_need_shared_memory = true});
  });
  xjob::register_backend("in_place", [](xjob::backend_settings const&) {
    return std::make_unique<xjob::testing::declaring_backend>(xjob::backend_capabilities{});
  });
  xt::xtensor<double, 1> const x = xt::arange<double>(1000.0);
  for (char const* backend : {"staging", "in_place"}) {
    INFO(backend);
    xt::xtensor<double, 1> y = xt::zeros<double>({1000});
    std::atomic<int> chunks_in_y{0};
    xjob::parallel par({.n_jobs = 2, .backend = backend, .chunk_size = 100});
    par.map_chunks(x, [&](auto const& in, auto&& out) {
      if (out.data() >= y.data() && out.data() < y.data() + y.size()) ++chunks_in_y;
      out = in * 2.0;
    }, y);
    REQUIRE((y == x * 2.0));
    REQUIRE(chunks_in_y.load() == (std::string(backend) == "staging" ? 0 : 10));
  }
}

TEST_CASE("streaming stores give bit for bit the results of ordinary stores") {
  auto const x = rows(4099, 7);  // an odd size: chunks start off any register alignment
  xt::xtensor<float, 2> const xf = xt::cast<float>(x);
  auto const f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };
  auto const g = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0f + 1.0f; };
  // Reads its output back: an automatic call learns to stop streaming.
  auto const twice = [](auto const& in, auto&& out) {
    out = in * 3.0;
    out = out - in;
  };
  // Broadcasts a row: not linear, so ordinary stores whatever the option.
  auto const broadcast = [](auto const& in, auto&& out) { out = in + xt::view(in, 0, xt::all()); };
  for (char const* backend : {"sequential", "threads", "processes"}) {
    std::vector<xt::xtensor<double, 2>> doubles;
    std::vector<xt::xtensor<float, 2>> floats;
    for (auto mode : {xjob::streaming_stores::off, xjob::streaming_stores::on, xjob::streaming_stores::automatic}) {
      xjob::parallel par({.n_jobs = 2, .backend = backend, .chunk_size = 97, .streaming = mode});
      INFO(backend << " mode " << static_cast<int>(mode));
      auto y = par.map_chunks(x, f);
      doubles.push_back(y.view<2>());
      doubles.push_back(par.map_chunks(x, twice).view<2>());
      doubles.push_back(par.map_chunks(x, broadcast).view<2>());
      // Into a caller's output at an odd offset from any alignment.
      std::vector<double> storage(x.size() + 1);
      auto shifted = xt::adapt(storage.data() + 1, x.size(), xt::no_ownership(), std::array<std::size_t, 2>{4099, 7});
      par.map_chunks(x, f, shifted);
      doubles.push_back(shifted);
      floats.push_back(par.map_chunks(xf, g).view<2>());
    }
    for (std::size_t i = 4; i < doubles.size(); ++i) {
      INFO("result " << i % 4 << " of mode " << i / 4);
      REQUIRE(std::memcmp(doubles[i].data(), doubles[i % 4].data(), doubles[i].size() * sizeof(double)) == 0);
    }
    REQUIRE(std::memcmp(floats[1].data(), floats[0].data(), floats[0].size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(floats[2].data(), floats[0].data(), floats[0].size() * sizeof(float)) == 0);
    REQUIRE((doubles[1] == x * 2.0));
  }
}

TEST_CASE("streaming stores take exactly the assignments xtensor makes linear with SIMD") {
  std::vector<double> storage(1001, -1.0);
  std::vector<double> source(1000);
  for (std::size_t i = 0; i < source.size(); ++i) source[i] = static_cast<double>(i);
  auto const in = xt::adapt(static_cast<double const*>(source.data()), 1000, xt::no_ownership(),
                            std::array<std::size_t, 2>{100, 10});
  // One element past any register alignment, so head, body and tail all run.
  auto out = xt::adapt(storage.data() + 1, 1000, xt::no_ownership(), std::array<std::size_t, 2>{100, 10});
  bool const streams = XJOB_HAS_STREAMING_STORES != 0;
  REQUIRE(xjob::detail::stream_assign(out, xt::sqrt(in) * 2.0 + 1.0) == streams);
  xjob::detail::fence_streaming_stores();
  if (streams) {
    REQUIRE(storage[0] == -1.0);
    REQUIRE((out == xt::sqrt(in) * 2.0 + 1.0));
  }
  // Not linear: a broadcast row, a transposed operand, integers.
  REQUIRE_FALSE(xjob::detail::stream_assign(out, in + xt::view(in, 0, xt::all())));
  REQUIRE_FALSE(xjob::detail::stream_assign(out, in + xt::transpose(xt::reshape_view(in, {10, 100}))));
  std::vector<int> ints(1000);
  auto int_out = xt::adapt(ints.data(), 1000, xt::no_ownership(), std::array<std::size_t, 2>{100, 10});
  REQUIRE_FALSE(xjob::detail::stream_assign(int_out, xt::cast<int>(in)));
}

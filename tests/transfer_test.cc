// Which results can leave a worker process, and the codec that carries them:
// raw bytes for trivially copyable types, cereal for the rest, and a clear
// error for bytes that do not hold what they should.
//
// Compiled twice: as transfer_test under -std=c++20, and as transfer_gnu_test
// under -std=gnu++20 (CMake's default for CMAKE_CXX_STANDARD 20), where GCC
// counts __int128 as arithmetic and cereal serialises it itself.
#include <xjob/transfer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/detail/result_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>
#include <xjob/transfer_xtensor.hpp>

// The mode this copy of the file was built in is the one its target names:
// the target's -std=gnu++20 must come after .bazelrc's --cxxopt=-std=c++20.
#if defined(XJOB_TEST_GNU_MODE)
static_assert(std::is_arithmetic_v<__int128>, "transfer_gnu_test must be compiled with -std=gnu++20");
#else
static_assert(!std::is_arithmetic_v<__int128>, "transfer_test must be compiled with -std=c++20");
#endif

namespace {

struct point {
  double x = 0;
  double y = 0;
  friend bool operator==(point const&, point const&) = default;
};

struct histogram {
  std::string name;
  std::vector<long> bins;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, bins);
  }
  friend bool operator==(histogram const&, histogram const&) = default;
};

struct serialisable_without_default {
  explicit serialisable_without_default(int v) : value(std::to_string(v)) {}
  std::string value;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(value);
  }
};

struct handle {
  std::mutex guard;
};

// Movable, but neither trivially copyable nor serialisable.
struct local_sum {
  long value = 0;
  std::unique_ptr<int> note;
};

using u128 = unsigned __int128;
using i128 = __int128;

// A 128-bit value as its two 64-bit halves (high, low): comparable and
// printable by Catch in both modes.
std::pair<std::uint64_t, std::uint64_t> halves(u128 value) {
  return {static_cast<std::uint64_t>(value >> 64), static_cast<std::uint64_t>(value)};
}
std::pair<std::uint64_t, std::uint64_t> halves(i128 value) { return halves(static_cast<u128>(value)); }

// Values well above 2^64, different in both halves for each i.
u128 big_unsigned(int i) { return (u128{0x0123456789abcdefULL} << 64 | 0xfedcba9876543210ULL) * static_cast<u128>(i + 1); }
i128 big_negative(int i) { return -(i128{1} << 100) - static_cast<i128>(i) * (i128{1} << 70) - i; }

template <class R, class Slot = R>
std::vector<Slot> round_trip(std::vector<Slot> const& from, std::size_t begin, std::size_t end) {
  std::vector<Slot> source = from;
  std::string bytes;
  xjob::detail::result_codec<R, Slot>(source.data()).save(begin, end, bytes);
  std::vector<Slot> target(from.size());
  xjob::detail::result_codec<R, Slot>(target.data()).load(begin, end, bytes);
  return target;
}

}  // namespace

template <>
inline constexpr bool xjob::in_process_only<handle> = true;
template <>
inline constexpr bool xjob::in_process_only<local_sum> = true;

TEST_CASE("transferable: what can come back from a worker process") {
  STATIC_REQUIRE(xjob::transferable<int>);
  STATIC_REQUIRE(xjob::transferable<point>);
  STATIC_REQUIRE(xjob::transferable<unsigned __int128>);
  STATIC_REQUIRE(xjob::transferable<std::pair<int, unsigned __int128>>);
  STATIC_REQUIRE(xjob::transferable<std::string>);
  STATIC_REQUIRE(xjob::transferable<std::vector<double>>);
  STATIC_REQUIRE(xjob::transferable<std::map<std::string, std::vector<int>>>);
  STATIC_REQUIRE(xjob::transferable<std::optional<std::string>>);
  STATIC_REQUIRE(xjob::transferable<xt::xtensor<double, 2>>);
  STATIC_REQUIRE(xjob::transferable<xt::xarray<float>>);
  STATIC_REQUIRE(xjob::transferable<histogram>);
  STATIC_REQUIRE_FALSE(xjob::transferable<std::mutex>);
  STATIC_REQUIRE_FALSE(xjob::transferable<std::function<int()>>);
  STATIC_REQUIRE_FALSE(xjob::transferable<serialisable_without_default>);
  STATIC_REQUIRE_FALSE(xjob::transferable<handle>);
}

TEST_CASE("trivially copyable results travel as their bytes") {
  std::vector<point> const points = {{1, 2}, {3, 4}, {5, 6}, {7, 8}};
  auto const back = round_trip<point>(points, 1, 3);
  REQUIRE(back[1] == points[1]);
  REQUIRE(back[2] == points[2]);
  REQUIRE(back[0] == point{});  // outside the range: untouched
  std::vector<std::optional<bool>> const flags = {true, false, true};
  auto const flags_back = round_trip<bool, std::optional<bool>>(flags, 0, 3);
  REQUIRE(flags_back == flags);
}

TEST_CASE("other results travel through cereal: strings, containers, xtensor, user types") {
  std::vector<std::string> const words = {"", "one", std::string(100000, 'x')};
  REQUIRE(round_trip<std::string>(words, 0, 3) == words);
  std::vector<histogram> const histograms = {{"a", {1, 2, 3}}, {"b", {}}};
  REQUIRE(round_trip<histogram>(histograms, 0, 2) == histograms);
  xt::xtensor<double, 2> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  std::vector<xt::xtensor<double, 2>> const tensors = {a, a * 2.0};
  auto const tensors_back = round_trip<xt::xtensor<double, 2>>(tensors, 0, 2);
  REQUIRE(tensors_back[1].shape() == tensors[1].shape());
  REQUIRE((tensors_back[1] == tensors[1]));
  xt::xarray<std::string> labels = xt::xarray<std::string>::from_shape({2, 2});
  labels(1, 0) = "r";
  labels(0, 1) = "q";
  std::vector<xt::xarray<std::string>> const strings = {labels};
  auto const strings_back = round_trip<xt::xarray<std::string>>(strings, 0, 1);
  REQUIRE(strings_back[0].dimension() == 2);
  REQUIRE(strings_back[0](1, 0) == "r");
}

TEST_CASE("bytes that do not hold the results are an error naming the tasks") {
  std::vector<int> slots(10);
  xjob::detail::result_codec<int, int> ints(slots.data());
  XJOB_REQUIRE_THROWS_WITH_TEXT(ints.load(2, 5, std::string(7, '\0')), xjob::error,
                                "the results of tasks 2 to 4 came back from their worker malformed (7 bytes)");
  std::vector<std::string> words(4);
  xjob::detail::result_codec<std::string, std::string> strings(words.data());
  std::string bytes;
  strings.save(0, 2, bytes);
  XJOB_REQUIRE_THROWS_WITH_TEXT(strings.load(0, 3, bytes), xjob::error, "tasks 0 to 2 came back");
  XJOB_REQUIRE_THROWS_WITH_TEXT(strings.load(0, 1, bytes), xjob::error, "tasks 0 to 0 came back");
}

TEST_CASE("a result declared in_process_only is refused when it would have to travel") {
  std::vector<std::optional<handle>> slots(1);
  xjob::detail::result_codec<handle, std::optional<handle>> codec(slots.data());
  REQUIRE_THAT(codec.stays_in_process(), Catch::Contains("declared xjob::in_process_only"));
  std::string bytes;
  REQUIRE_THROWS_AS(codec.save(0, 1, bytes), xjob::error);
}

TEST_CASE("a reduction of an in_process_only type runs in the caller's process and is refused by worker processes") {
  auto const one = [](int i) { return local_sum{i, nullptr}; };
  auto const add = [](local_sum a, local_sum b) { return local_sum{a.value + b.value, nullptr}; };
  REQUIRE(xjob::parallel({.n_jobs = 2, .backend = "threads"}).map_reduce(one, std::views::iota(0, 100), local_sum{}, add).value ==
          4950);
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)xjob::parallel({.n_jobs = 2, .backend = "processes"}).map_reduce(one, std::views::iota(0, 100), local_sum{}, add),
      xjob::error, "declared xjob::in_process_only");
}

TEST_CASE("128-bit integers come back from worker processes exactly") {
  xjob::parallel par({.n_jobs = 2, .backend = "processes"});
  REQUIRE(par.runs_out_of_process());
  auto const pairs =
      par.map([](int i) { return std::pair<int, unsigned __int128>{i, big_unsigned(i)}; }, std::views::iota(0, 9));
  REQUIRE(pairs.size() == 9);
  for (int i = 0; i < 9; ++i) {
    REQUIRE(pairs[i].first == i);
    REQUIRE(halves(pairs[i].second) == halves(big_unsigned(i)));
  }
  REQUIRE(pairs[8].second > u128{1} << 64);

  auto const values = par.map([](int i) { return big_negative(i); }, std::views::iota(0, 9));
  REQUIRE(values.size() == 9);
  for (int i = 0; i < 9; ++i) REQUIRE(halves(values[i]) == halves(big_negative(i)));

  // The extremes, and a container of them (through cereal in both modes).
  auto const extremes = par.map(
      [](int i) {
        u128 const all_ones = ~u128{0};
        return std::vector<i128>{static_cast<i128>(all_ones >> 1), -static_cast<i128>(all_ones >> 1) - 1,
                                 static_cast<i128>(i)};
      },
      std::views::iota(0, 4));
  REQUIRE(extremes.size() == 4);
  REQUIRE(halves(extremes[3][0]) == std::pair<std::uint64_t, std::uint64_t>{0x7fffffffffffffffULL, ~0ULL});
  REQUIRE(halves(extremes[3][1]) == std::pair<std::uint64_t, std::uint64_t>{0x8000000000000000ULL, 0});
  REQUIRE(halves(extremes[3][2]) == halves(i128{3}));
}

TEST_CASE("a sequence whose count does not fit its bytes is refused before memory is reserved for it") {
  std::string bytes;
  xjob::detail::encode_sequence<std::uint64_t>(bytes, std::vector<std::uint64_t>{1, 2, 3});
  REQUIRE(xjob::detail::decode_sequence<std::uint64_t>(bytes, 3, "three numbers") == std::vector<std::uint64_t>{1, 2, 3});
  // A count that a corrupt or hostile frame made up: an error, not bad_alloc.
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::detail::decode_sequence<std::uint64_t>(bytes, SIZE_MAX / 4, "numbers"),
                                xjob::error, "numbers arrived malformed (24 bytes for");
  std::string words;
  xjob::detail::encode_sequence<std::string>(words, std::vector<std::string>{"a", "bc"});
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::detail::decode_sequence<std::string>(words, SIZE_MAX / 64, "words"),
                                xjob::error, "words arrived malformed");
}

// The API of xjob in one program: delayed calls, map, chunked maps of an
// xtensor array into shared memory and into a .npy file.
#include <cstdio>
#include <filesystem>
#include <ranges>
#include <utility>
#include <vector>

#include <xtensor/xmath.hpp>
#include <xtensor/xrandom.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

// SEEDS.md section 4: sum of i*i for i < count, which overflows 64 bits.
std::pair<int, unsigned __int128> task(int idx, long count) {
  unsigned __int128 sum = 0;
  for (long i = 0; i < count; ++i) sum += static_cast<unsigned __int128>(i) * static_cast<unsigned __int128>(i);
  return {idx, sum};
}

std::string to_string(unsigned __int128 value) {
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  } while (value != 0);
  return digits;
}

int main(int argc, char** argv) {
  long const count = argc > 1 ? std::atol(argv[1]) : 10'000'000;
  std::vector<std::pair<int, long>> jobs = {{1, count}, {2, count}, {3, count}, {4, count}};
  auto results = xjob::parallel(4)(jobs | std::views::transform([](auto const& j) {
                                     return xjob::delayed(task)(j.first, j.second);
                                   }));
  for (auto const& [idx, sum] : results) std::printf("task %d: %s\n", idx, to_string(sum).c_str());

  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  std::vector<int> squares = par.map([](int i) { return i * i; }, std::views::iota(0, 20));
  std::printf("squares:");
  for (int s : squares) std::printf(" %d", s);
  std::printf("\n");

  xt::xtensor<double, 2> x = xt::random::rand<double>({std::size_t(1) << 16, std::size_t(16)});
  xjob::shared_array<double> y =
      par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
  auto v = y.view();
  std::printf("map_chunks: shape (%zu, %zu), max error %g\n", v.shape()[0], v.shape()[1],
              xt::amax(xt::abs(v - (xt::sqrt(x) * 2.0 + 1.0)))());

  auto const path = std::filesystem::temp_directory_path() / "xjob-quickstart.npy";
  auto f = xjob::shared_array<double>::create_npy(path, {std::size_t(1) << 16, 16});
  par.map_chunks(x, [](auto const& in, auto&& out) { out = in * 3.0; }, f);
  std::printf("wrote %s (%zu bytes of data)\n", f.path().c_str(), f.bytes());
  std::filesystem::remove(path);
}

// first_touch_bench: what a cold output's first-touch page faults cost, and
// what helps, outside xjob: the same map y = sqrt(x)*2+1 written by 2
// threads (each its half) into memory nobody touched, made in the timed part
// each repetition in one of these ways.
//
//   bazel run --config=bench //bench:first_touch_bench            # 1 GiB out
//   bazel run --config=bench //bench:first_touch_bench -- --quick # 32 MiB, 3 reps
//
// - malloc: private anonymous memory (what a program without xjob writes
//   into; glibc maps blocks this large from the kernel). The baseline.
// - malloc + MADV_HUGEPAGE: the same with transparent huge pages asked for
//   (the kernel's `enabled` is often `madvise`).
// - memfd: shared memory, as a new shared_array is; each first write faults.
// - memfd, read each page first: a read fault, then the write.
// - memfd, fallocate first: the pages made in one call, then mapped by faults.
// - memfd, each thread populates its half (MADV_POPULATE_WRITE), then writes.
// - memfd, populate then write per 256 KiB piece (what map_chunks does now:
//   each output slab is populated just before f writes it, so its zeroed
//   lines are still in the cache).
// - memfd + MADV_HUGEPAGE: transparent huge pages for shared memory, which
//   the kernel gives only where /sys/kernel/mm/transparent_hugepage/
//   shmem_enabled is `advise` (or `always`); a no-op elsewhere.
// - memfd with MFD_HUGETLB (2 MiB pages): only where the machine has huge
//   pages reserved (vm.nr_hugepages); skipped otherwise.
//
// Every variant runs once per repetition, interleaved, after one warm-up
// round; medians, and ratios to malloc's median of the same run. The output
// is checked (a wrong element fails the run).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench_support.hpp"

namespace {

using namespace xjob::bench;

struct options {
  std::size_t elements = std::size_t(1) << 27;
  int reps = 7;
};

// A new output of `bytes` (owner of the mapping and its descriptor).
class output {
 public:
  output(void* data, std::size_t bytes, int fd) : data_(static_cast<double*>(data)), bytes_(bytes), fd_(fd) {}
  output(output&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(other.bytes_), fd_(std::exchange(other.fd_, -1)) {}
  output& operator=(output&&) = delete;
  ~output() {
    if (data_ != nullptr) munmap(data_, bytes_);
    if (fd_ >= 0) close(fd_);
  }
  [[nodiscard]] double* data() const { return data_; }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  double* data_;
  std::size_t bytes_;
  int fd_;
};

output private_memory(std::size_t bytes, bool huge) {
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) fail(fmt::format("cannot map {} bytes: {}", bytes, std::strerror(errno)));
  if (huge) madvise(data, bytes, MADV_HUGEPAGE);
  return output(data, bytes, -1);
}

// Without data if the kernel refused to map it (no huge pages reserved).
output shared_memory(std::size_t bytes, unsigned flags, bool fallocate_first, bool huge_advice = false) {
  int const fd = memfd_create("first-touch", MFD_CLOEXEC | flags);
  if (fd < 0) fail(fmt::format("memfd_create: {}", std::strerror(errno)));
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) fail(fmt::format("ftruncate: {}", std::strerror(errno)));
  if (fallocate_first && fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0)
    fail(fmt::format("fallocate: {}", std::strerror(errno)));
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    close(fd);
    return output(nullptr, 0, -1);
  }
  if (huge_advice) madvise(data, bytes, MADV_HUGEPAGE);
  return output(data, bytes, fd);
}

void populate(double* first, std::size_t count) {
  if (madvise(first, count * sizeof(double), MADV_POPULATE_WRITE) != 0)
    fail(fmt::format("MADV_POPULATE_WRITE: {}", std::strerror(errno)));
}

// Runs body(begin, end) on two threads, one half each.
template <class Body>
void on_two_threads(std::size_t n, Body body) {
  std::thread other([&] { body(n / 2, n); });
  body(0, n / 2);
  other.join();
}

struct variant {
  std::string name;
  // Makes the output and writes it (timed); returns the output, or one
  // without data if this machine cannot make it.
  std::function<output(double const* x, std::size_t n)> run;
  std::vector<double> seconds;
  bool skipped = false;
};

std::vector<variant> variants() {
  constexpr std::size_t piece = (std::size_t(256) << 10) / sizeof(double);
  auto write = [](double const* x, double* y, std::size_t begin, std::size_t end) { map_range(x, y, begin, end); };
  auto plain = [write](output out, double const* x, std::size_t n) {
    if (out.data() != nullptr) on_two_threads(n, [&](std::size_t b, std::size_t e) { write(x, out.data(), b, e); });
    return out;
  };
  std::vector<variant> all;
  auto add = [&all](std::string name, std::function<output(double const*, std::size_t)> run) {
    all.push_back(variant{std::move(name), std::move(run), {}, false});
  };
  add("malloc (private memory), the baseline",
      [plain](double const* x, std::size_t n) { return plain(private_memory(n * 8, false), x, n); });
  add("malloc + MADV_HUGEPAGE",
      [plain](double const* x, std::size_t n) { return plain(private_memory(n * 8, true), x, n); });
  add("memfd (shared memory), written",
      [plain](double const* x, std::size_t n) { return plain(shared_memory(n * 8, 0, false), x, n); });
  add("memfd, each page read first",
      [write](double const* x, std::size_t n) {
        output out = shared_memory(n * 8, 0, false);
        on_two_threads(n, [&](std::size_t b, std::size_t e) {
          auto const* bytes = reinterpret_cast<unsigned char const volatile*>(out.data());
          for (std::size_t i = b * 8; i < e * 8; i += 4096) (void)bytes[i];
          write(x, out.data(), b, e);
        });
        return out;
      });
  add("memfd, fallocate first",
      [plain](double const* x, std::size_t n) { return plain(shared_memory(n * 8, 0, true), x, n); });
  add("memfd, each thread populates its half, then writes",
      [write](double const* x, std::size_t n) {
        output out = shared_memory(n * 8, 0, false);
        on_two_threads(n, [&](std::size_t b, std::size_t e) {
          populate(out.data() + b, e - b);
          write(x, out.data(), b, e);
        });
        return out;
      });
  add("memfd, populate + write per 256 KiB (map_chunks)",
      [write](double const* x, std::size_t n) {
        output out = shared_memory(n * 8, 0, false);
        on_two_threads(n, [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; i += piece) {
            std::size_t const end = std::min(e, i + piece);
            populate(out.data() + i, end - i);
            write(x, out.data(), i, end);
          }
        });
        return out;
      });
  add("memfd + MADV_HUGEPAGE (shmem_enabled: advise)",
      [plain](double const* x, std::size_t n) { return plain(shared_memory(n * 8, 0, false, true), x, n); });
  add("memfd with MFD_HUGETLB (2 MiB pages)",
      [plain](double const* x, std::size_t n) {
        std::size_t const huge = std::size_t(2) << 20;
        return plain(shared_memory((n * 8 + huge - 1) / huge * huge, MFD_HUGETLB, false), x, n);
      });
  return all;
}

int run(options const& o) {
  std::size_t const n = o.elements;
  std::vector<double> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = 0.25 + static_cast<double>(i % 4099) * 0.37;
  std::vector<variant> all = variants();
  for (int rep = -1; rep < o.reps; ++rep) {
    for (std::size_t k = 0; k < all.size(); ++k) {
      variant& v = all[(k + static_cast<std::size_t>(rep + 1)) % all.size()];
      if (v.skipped) continue;
      settle();
      auto const start = clock_type::now();
      output const out = v.run(x.data(), n);
      double const seconds = seconds_since(start);
      if (out.data() == nullptr) {
        v.skipped = true;
        continue;
      }
      for (std::size_t i : {std::size_t(0), n / 2 - 1, n / 2, n - 1})
        if (out.data()[i] != kernel(x[i])) fail(fmt::format("{}: element {} is {}", v.name, i, out.data()[i]));
      if (rep >= 0) v.seconds.push_back(seconds);
    }
  }
  double const baseline = summarize(all[0].seconds).median;
  fmt::print("First touch of a new {:.3g} GiB output, y = sqrt(x)*2+1 by 2 threads, {} repetitions, medians.\n",
             static_cast<double>(n * 8) / double(1 << 30), o.reps);
  fmt::print("{:<52} {:>9} {:>9} {:>9} {:>12}\n", "output", "median s", "min s", "max s", "x malloc");
  for (variant const& v : all) {
    if (v.skipped) {
      fmt::print("{:<52} {:>9}   (the kernel refused: no huge pages reserved, vm.nr_hugepages)\n", v.name, "-");
      continue;
    }
    summary const s = summarize(v.seconds);
    fmt::print("{:<52} {:>9.4f} {:>9.4f} {:>9.4f} {:>11.2f}x\n", v.name, s.median, s.min, s.max, baseline / s.median);
  }
  fmt::print("'x malloc' = malloc's median / this median: above 1 is faster than writing fresh private memory.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view const arg = argv[i];
    if (arg == "--quick") {
      o.elements = std::size_t(1) << 22;
      o.reps = 3;
    } else if (arg.starts_with("--reps=")) {
      o.reps = std::max(1, std::atoi(argv[i] + 7));
    } else {
      std::fprintf(stderr, "usage: first_touch_bench [--quick] [--reps=N]\n");
      return 2;
    }
  }
  return run(o);
}

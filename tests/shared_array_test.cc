#include <xjob/map_chunks.hpp>
#include <xjob/parallel.hpp>
#include <xjob/shared_array.hpp>
#include <xjob/shared_array_view.hpp>

#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cerrno>
#include <complex>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>

#include <catch2/catch.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xtensor.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

namespace {

using xjob::testing::temp_dir;

// Runs a Python program with Debian's interpreter (which has python3-numpy)
// and returns what it printed.
std::string run_python(std::string const& program) {
  xjob::testing::python_run const run = xjob::testing::run_python(program);
  INFO(run.output);
  REQUIRE(run.status == 0);
  return run.output;
}

// Runs `body` in a child process; returns its exit status.
template <class Body>
int in_child(Body body) {
  std::fflush(nullptr);
  pid_t const pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(body());
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("anonymous arrays are zero-filled, shaped, and writable through their view") {
  xjob::shared_array<double> a({3, 4});
  REQUIRE(a.shape() == std::vector<std::size_t>{3, 4});
  REQUIRE(a.size() == 12);
  REQUIRE(a.bytes() == 96);
  REQUIRE(a.dimension() == 2);
  for (double v : a) REQUIRE(v == 0.0);
  auto v = a.view();
  v(2, 3) = 5.0;
  REQUIRE(a.data()[11] == 5.0);
  auto fixed = a.view<2>();
  REQUIRE(fixed(2, 3) == 5.0);
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)a.view<3>(), xjob::invalid_argument, "rank 2, not the rank 3");
  REQUIRE_FALSE(a.is_file_backed());
  REQUIRE(a.path().empty());
}

TEST_CASE("arrays are move-only and moves keep the memory") {
  static_assert(!std::is_copy_constructible_v<xjob::shared_array<float>>);
  static_assert(std::is_nothrow_move_constructible_v<xjob::shared_array<float>>);
  xjob::shared_array<float> a({100});
  a.data()[7] = 3.0f;
  float* const memory = a.data();
  xjob::shared_array<float> b = std::move(a);
  REQUIRE(b.data() == memory);
  REQUIRE(b.data()[7] == 3.0f);
  xjob::shared_array<float> c;
  REQUIRE(c.size() == 0);
  c = std::move(b);
  REQUIRE(c.data()[7] == 3.0f);
}

TEST_CASE("memory is shared with forked children, both ways") {
  xjob::shared_array<std::int64_t> counter({1});
  int const status = in_child([&counter] {
    counter.data()[0] = 42;
    return 0;
  });
  REQUIRE(status == 0);
  REQUIRE(counter.data()[0] == 42);
}

TEST_CASE("a byte count that overflows is an error naming the shape") {
  std::size_t const huge = std::size_t(1) << 62;
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::shared_array<double>({huge, 8}), xjob::invalid_argument,
                                "shape (4611686018427387904, 8) is too large");
}

TEST_CASE("freed large arrays are recycled; uninitialized ones may keep old contents, zeroed ones never") {
  xjob::trim_shared_memory_cache();
  std::size_t const n = std::size_t(1) << 18;  // 2 MiB
  double* first = nullptr;
  {
    xjob::shared_array<double> a({n});
    first = a.data();
    for (double& v : a) v = 9.0;
  }
  REQUIRE(xjob::shared_memory_cache_bytes() >= n * sizeof(double));
  {
    xjob::shared_array<double> zeroed({n});
    REQUIRE(zeroed.data() == first);  // the same mapping again
    for (double v : zeroed) REQUIRE(v == 0.0);
    for (double& v : zeroed) v = 9.0;
  }
  {
    xjob::shared_array<double> reused({n}, xjob::uninitialized);
    REQUIRE(reused.data() == first);
  }
  xjob::trim_shared_memory_cache();
  REQUIRE(xjob::shared_memory_cache_bytes() == 0);
}

TEST_CASE("create_npy makes the file visible only when committed") {
  temp_dir dir;
  auto const path = dir / "out.npy";
  {
    auto f = xjob::shared_array<std::int32_t>::create_npy(path, {5, 2});
    REQUIRE(f.is_file_backed());
    REQUIRE_FALSE(f.committed());
    REQUIRE(f.path() == path);
    REQUIRE_FALSE(std::filesystem::exists(path));
    // Only a temporary beside it, named so it cannot be mistaken for a result.
    std::size_t partials = 0;
    for (auto const& e : std::filesystem::directory_iterator(dir.path())) {
      REQUIRE(e.path().filename().string().ends_with(".partial"));
      ++partials;
    }
    REQUIRE(partials == 1);
    for (std::int32_t v : f) REQUIRE(v == 0);
    f.commit();
    f.commit();  // idempotent
    REQUIRE(std::filesystem::exists(path));
  }
  REQUIRE(std::filesystem::exists(path));  // committed files stay
}

TEST_CASE("an uncommitted file is deleted with its array") {
  temp_dir dir;
  { auto f = xjob::shared_array<double>::create_npy(dir / "never.npy", {10}); }
  REQUIRE(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("NumPy reads what xjob writes, memory-mapped") {
  temp_dir dir;
  {
    auto f = xjob::shared_array<double>::create_npy(dir / "f8.npy", {1000, 3});
    auto v = f.view<2>();
    for (std::size_t i = 0; i < 1000; ++i)
      for (std::size_t j = 0; j < 3; ++j) v(i, j) = static_cast<double>(i) * 0.5 + static_cast<double>(j);
    f.commit();
    auto g = xjob::shared_array<std::int32_t>::create_npy(dir / "i4.npy", {7});
    for (std::size_t i = 0; i < 7; ++i) g.data()[i] = -static_cast<std::int32_t>(i);
    g.commit();
    auto b = xjob::shared_array<bool>::create_npy(dir / "b1.npy", {4});
    b.data()[2] = true;
    b.commit();
    auto c = xjob::shared_array<std::complex<float>>::create_npy(dir / "c8.npy", {2, 1, 2});
    c.data()[3] = {1.5f, -2.0f};
    c.commit();
  }
  std::string const out = run_python("import numpy as np\n"
                                     "d = '" + dir.path().string() + "'\n"
                                     "f = np.load(d + '/f8.npy', mmap_mode='r')\n"
                                     "assert f.dtype == np.float64 and f.shape == (1000, 3), (f.dtype, f.shape)\n"
                                     "assert f[999, 2] == 999 * 0.5 + 2 and f[10, 1] == 6.0\n"
                                     "g = np.load(d + '/i4.npy', mmap_mode='r')\n"
                                     "assert g.dtype == np.int32 and list(g) == [0, -1, -2, -3, -4, -5, -6]\n"
                                     "b = np.load(d + '/b1.npy')\n"
                                     "assert b.dtype == np.bool_ and list(b) == [False, False, True, False]\n"
                                     "c = np.load(d + '/c8.npy')\n"
                                     "assert c.dtype == np.complex64 and c.shape == (2, 1, 2) and c[1, 0, 1] == 1.5-2j\n"
                                     "print('numpy agrees')\n");
  REQUIRE(out.find("numpy agrees") != std::string::npos);
}

TEST_CASE("xjob maps what NumPy writes, read-only or read-write") {
  temp_dir dir;
  run_python("import numpy as np\n"
             "d = '" + dir.path().string() + "'\n"
             "np.save(d + '/a.npy', np.arange(24, dtype=np.float32).reshape(2, 3, 4))\n"
             "np.save(d + '/big_header.npy', np.zeros((1,) * 30, dtype=np.uint8))\n"
             "np.save(d + '/fortran.npy', np.asfortranarray(np.ones((3, 2))))\n");
  auto const a = xjob::shared_array<float const>::open_npy(dir / "a.npy");
  REQUIRE(a.shape() == std::vector<std::size_t>{2, 3, 4});
  REQUIRE(a.view()(1, 2, 3) == 23.0f);
  static_assert(std::is_same_v<decltype(a.data()), float const*>);

  auto const many = xjob::shared_array<std::uint8_t const>::open_npy(dir / "big_header.npy");
  REQUIRE(many.dimension() == 30);

  {
    auto rw = xjob::shared_array<float>::open_npy(dir / "a.npy");
    rw.view()(0, 0, 0) = 100.0f;
  }
  std::string const out = run_python("import numpy as np\n"
                                     "a = np.load('" + (dir / "a.npy").string() + "')\n"
                                     "assert a[0, 0, 0] == 100.0 and a[1, 2, 3] == 23.0\n"
                                     "print('written through')\n");
  REQUIRE(out.find("written through") != std::string::npos);

  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "fortran.npy"), xjob::npy_error,
                                "Fortran-ordered");
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "a.npy"), xjob::npy_error,
                                "dtype '<f4' does not match the array's element type ('<f8')");
}

TEST_CASE("missing, empty, malformed and truncated files are npy_errors naming the file") {
  temp_dir dir;
  auto const missing = dir / "missing.npy";
  try {
    (void)xjob::shared_array<double>::open_npy(missing);
    FAIL("no exception");
  } catch (xjob::npy_error const& e) {
    REQUIRE(e.path() == missing);
    REQUIRE(e.code() == std::errc::no_such_file_or_directory);
    REQUIRE(std::string(e.what()).find(missing.string()) != std::string::npos);
  }
  { std::ofstream(dir / "empty.npy"); }
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "empty.npy"), xjob::npy_error,
                                "empty");
  { std::ofstream(dir / "text.npy") << "hello, this is not numpy"; }
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "text.npy"), xjob::npy_error,
                                "not a .npy file");
  {
    auto f = xjob::shared_array<double>::create_npy(dir / "cut.npy", {100});
    f.commit();
  }
  std::filesystem::resize_file(dir / "cut.npy", 64 + 8 * 50);
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "cut.npy"), xjob::npy_error,
                                "the file is truncated");
  if (geteuid() != 0) {
    std::filesystem::permissions(dir / "cut.npy", std::filesystem::perms::none);
    XJOB_REQUIRE_THROWS_WITH_TEXT((void)xjob::shared_array<double>::open_npy(dir / "cut.npy"), xjob::npy_error,
                                  "Permission denied");
  }
}

TEST_CASE("a full filesystem is an exception when the array is made, never a SIGBUS later") {
  temp_dir dir;
  auto const small = dir / "small";
  std::filesystem::create_directory(small);
  // A real full tmpfs (what a small /dev/shm is), in a private mount
  // namespace so nothing outside the child sees it. Exit 77: not permitted.
  int const status = in_child([&small] {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1m") != 0)
      return 77;
    try {
      auto f = xjob::shared_array<double>::create_npy(small / "big.npy", {std::size_t(1) << 18});  // 2 MiB
      return 1;
    } catch (std::system_error const& e) {
      std::string const what = e.what();
      bool const named = what.find("cannot reserve") != std::string::npos &&
                         what.find((small / "big.npy").string()) != std::string::npos;
      if (e.code() != std::errc::no_space_on_device || !named) return 2;
    }
    return std::filesystem::is_empty(small) ? 0 : 3;  // no partial file left behind
  });
  if (status == 77) {
    WARN("cannot mount a tmpfs here; checking the reservation with a file size limit instead");
    int const limited = in_child([&small] {
      std::signal(SIGXFSZ, SIG_IGN);
      rlimit const limit{1 << 20, 1 << 20};
      if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 4;
      try {
        auto f = xjob::shared_array<double>::create_npy(small / "big.npy", {std::size_t(1) << 18});
        return 1;
      } catch (std::system_error const& e) {
        if (e.code() != std::errc::file_too_large) return 2;
      }
      return std::filesystem::is_empty(small) ? 0 : 3;
    });
    REQUIRE(limited == 0);
  } else {
    REQUIRE(status == 0);
  }
}

TEST_CASE("creating and dropping arrays leaks no file descriptors and no files") {
  temp_dir dir;
  std::size_t const before = xjob::testing::open_descriptor_count();
  for (int i = 0; i < 50; ++i) {
    xjob::shared_array<double> a({1000});
    auto f = xjob::shared_array<double>::create_npy(dir / ("f" + std::to_string(i) + ".npy"), {10});
    if (i % 2 == 0) f.commit();
    auto r = xjob::shared_array<double const>::open_npy(dir / "f0.npy");
  }
  REQUIRE(xjob::testing::open_descriptor_count() == before);
  std::size_t files = 0;
  for ([[maybe_unused]] auto const& e : std::filesystem::directory_iterator(dir.path())) ++files;
  REQUIRE(files == 25);  // the committed ones only
}

TEST_CASE("a forked child never reuses memory the parent still caches") {
  xjob::trim_shared_memory_cache();
  std::size_t const n = std::size_t(1) << 18;  // 2 MiB: cached when freed
  { xjob::shared_array<double> dropped({n}); }
  REQUIRE(xjob::shared_memory_cache_bytes() > 0);
  int to_child[2];
  int to_parent[2];
  REQUIRE(pipe(to_child) == 0);
  REQUIRE(pipe(to_parent) == 0);
  std::fflush(nullptr);
  pid_t const pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    xjob::shared_array<double> mine({n}, xjob::uninitialized);
    mine.data()[0] = 0.0;
    char token = 'c';
    if (write(to_parent[1], &token, 1) != 1 || read(to_child[0], &token, 1) != 1) _exit(3);
    _exit(mine.data()[0] == 0.0 ? 0 : 1);  // 1: the parent's write landed here
  }
  char token = 0;
  REQUIRE(read(to_parent[0], &token, 1) == 1);
  xjob::shared_array<double> reused({n}, xjob::uninitialized);  // takes the cached mapping
  reused.data()[0] = 7.0;
  REQUIRE(write(to_child[1], &token, 1) == 1);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// A daemon closes stdin and stdout; the next descriptors opened go there.
// Those behind arrays must not: a worker forked later would take one as its
// stdout and write its printf into the array.
TEST_CASE("shared arrays and .npy files never take the places of stdin and stdout") {
  temp_dir dir;
  xjob::shared_array<double> anonymous, file;
  xjob::shared_array<double const> opened;
  std::string const failure = xjob::testing::without_stdin_and_stdout([&] {
    anonymous = xjob::shared_array<double>({777'777});  // a size no cached region has
    file = xjob::shared_array<double>::create_npy(dir / "daemon.npy", {16});
    file.commit();
    opened = xjob::shared_array<double const>::open_npy(dir / "daemon.npy");
  });
  REQUIRE(failure.empty());
  REQUIRE(anonymous.size() == 777'777);
  REQUIRE(opened.size() == 16);
}

namespace {
// The kernel page size of the mapping holding `address`, in KiB, from
// /proc/self/smaps; 0 if not found.
long kernel_page_kib(void const* address) {
  std::ifstream smaps("/proc/self/smaps");
  auto const at = reinterpret_cast<std::uintptr_t>(address);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t begin = 0;
    std::uintptr_t end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2 && line.find(':') > line.find(' ')) {
      inside = begin <= at && at < end;
    } else if (inside && line.rfind("KernelPageSize:", 0) == 0) {
      return std::strtol(line.c_str() + 15, nullptr, 10);
    }
  }
  return 0;
}

// Huge pages neither in use nor reserved by a mapping (a MAP_SHARED one
// reserves all its pages when it is made).
long free_huge_pages() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  long free = 0;
  long reserved = 0;
  while (std::getline(meminfo, line)) {
    if (line.rfind("HugePages_Free:", 0) == 0) free = std::strtol(line.c_str() + 15, nullptr, 10);
    if (line.rfind("HugePages_Rsvd:", 0) == 0) reserved = std::strtol(line.c_str() + 15, nullptr, 10);
  }
  return free - reserved;
}
}  // namespace

TEST_CASE("XJOB_HUGE_PAGES=on puts an array in reserved huge pages, and falls back where the pool is short") {
  struct huge_pages_on {
    huge_pages_on() { ::setenv("XJOB_HUGE_PAGES", "on", 1); }
    ~huge_pages_on() { ::unsetenv("XJOB_HUGE_PAGES"); }
  } const on;
  xjob::trim_shared_memory_cache();
  std::size_t const huge_page = std::size_t(2) << 20;
  long const free_pages = free_huge_pages();
  SECTION("an array larger than the free pool gets ordinary pages") {
    std::size_t const n = (static_cast<std::size_t>(free_pages) + 1) * huge_page / sizeof(double);
    xjob::shared_array<double> a({n});
    a.data()[0] = 1.0;
    a.data()[n - 1] = 2.0;
    REQUIRE(kernel_page_kib(a.data()) == 4);
    REQUIRE(free_huge_pages() == free_pages);
  }
  SECTION("an array the pool has room for is in huge pages, and workers write it") {
    if (free_pages < 4) {
      WARN("no huge pages reserved here (vm.nr_hugepages; scripts/test.sh reserves some as root): skipped");
      return;
    }
    std::size_t const n = 3 * huge_page / sizeof(double) - 5;  // rounded up to 3 pages
    {
      xjob::shared_array<double> a({n});
      REQUIRE(kernel_page_kib(a.data()) == 2048);
      REQUIRE(free_huge_pages() == free_pages - 3);  // reserved when mapped
      xt::xtensor<double, 1> x = xt::arange<double>(static_cast<double>(n));
      for (char const* backend : {"threads", "processes"}) {
        xjob::parallel par({.n_jobs = 2, .backend = backend, .chunk_size = 10007});
        par.map_chunks(x, [](auto const& in, auto&& out) { out = in * 2.0; }, a);
        for (std::size_t i = 0; i < n; i += 997) REQUIRE(a.data()[i] == 2.0 * static_cast<double>(i));
        REQUIRE(a.data()[n - 1] == 2.0 * static_cast<double>(n - 1));
      }
      // And a new output from map_chunks, the cold path.
      auto const y = xjob::parallel({.n_jobs = 2, .backend = "processes"}).map_chunks(x, [](auto const& in, auto&& out) {
        out = in + 1.0;
      });
      REQUIRE(kernel_page_kib(y.data()) == 2048);
      REQUIRE(y.data()[n - 1] == static_cast<double>(n));
    }
    // Given back once every mapping is gone: the warm workers of the
    // parallel objects above map the arrays too, until they have exited.
    xjob::trim_shared_memory_cache();
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (free_huge_pages() != free_pages && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(free_huge_pages() == free_pages);
  }
}

// The workloads of xjob-bench and their variants: xjob's backends and
// process pools, the raw baselines (plain loop, oneTBB, OpenMP, std::thread,
// STREAM-like bandwidth), and the same work through joblib.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

#include "../bench_support.hpp"
#include "../compute_kernels.hpp"
#include "sweep.hpp"

namespace xjob::bench {

std::string workload::expected(variant const&) const { return reference; }

bool workload::matches(variant const& v, std::string const& got) const {
  std::string const want = expected(v);
  if (exact) return got == want;
  try {
    double const a = std::stod(got);
    double const b = std::stod(want);
    return std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b));
  } catch (std::exception const&) {
    return false;
  }
}

std::string size_text(std::optional<std::size_t> size) { return size ? std::to_string(*size) : "auto"; }

bench_context::bench_context(sweep_settings settings, joblib_client* joblib)
    : settings_(std::move(settings)), joblib_(joblib) {
  int const most = settings_.n_jobs.empty() ? 1 : std::ranges::max(settings_.n_jobs);
  if (most > static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism)))
    allow_more_threads_.emplace(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(most));
}

xjob::process_pool& bench_context::pool(xjob::start_method method, int n_jobs) {
  auto& slot = pools_[{method, n_jobs}];
  if (!slot) slot = std::make_unique<xjob::process_pool>(xjob::pool_options{.processes = n_jobs, .start_method = method});
  return *slot;
}

tbb::task_arena& bench_context::setup_arena() {
  return arena(std::max(2, static_cast<int>(std::thread::hardware_concurrency())));
}

tbb::task_arena& bench_context::arena(int n_jobs) {
  auto& slot = arenas_[n_jobs];
  if (!slot) slot = std::make_unique<tbb::task_arena>(n_jobs);
  return *slot;
}

namespace {

// ------------------------------------------------------------------ helpers

// Times `body` alone.
template <class Body>
double timed(Body&& body) {
  auto const start = clock_type::now();
  body();
  return seconds_since(start);
}

std::string number_text(double value) { return fmt::format("{:.17g}", value); }

// The [begin, end) ranges of `count` items cut into pieces of `size`.
std::vector<std::pair<std::size_t, std::size_t>> ranges_of(std::size_t count, std::size_t size) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t begin = 0; begin < count; begin += size) out.emplace_back(begin, std::min(count, begin + size));
  return out;
}

// x[i] = 0.25 + (i % 4099) * 0.37: positive, varied, cheap; joblib_bench.py
// makes the same. Filled in parallel, which also makes the pages resident.
void fill_input(double* x, std::size_t n, tbb::task_arena& arena) {
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n), [&](auto const& r) {
      for (std::size_t i = r.begin(); i < r.end(); ++i) x[i] = 0.25 + static_cast<double>(i % 4099) * 0.37;
    });
  });
}

// Poisons an output before a run, so that a run that writes nothing cannot
// pass on an earlier one's output. One thread on purpose: oneTBB's workers
// spin on for a while after a parallel loop, into the timed run, where they
// could take a CPU from a worker process. (Measured: the pool rows did not
// change when this went from oneTBB to one thread.)
void fill_nan(double* y, std::size_t n) { std::fill(y, y + n, std::numeric_limits<double>::quiet_NaN()); }

// Throws naming the first element of `y` that is not `ref`'s within
// `tolerance` (relative); NaN never passes.
void check_elements(std::string const& what, double const* y, double const* ref, std::size_t n, double tolerance,
                    tbb::task_arena& arena) {
  std::atomic<std::size_t> first_bad{n};
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n), [&](auto const& r) {
      for (std::size_t i = r.begin(); i < r.end(); ++i)
        if (!(std::abs(y[i] - ref[i]) <= tolerance * std::abs(ref[i]))) {
          std::size_t seen = first_bad.load();
          while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
          }
          break;
        }
    });
  });
  if (std::size_t const bad = first_bad.load(); bad < n)
    throw std::runtime_error(fmt::format("{}: element {} is {}, the sequential run gives {}", what, bad, y[bad], ref[bad]));
}

double checksum(double const* y, std::size_t n) {
  long double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += y[i];
  return static_cast<double>(s);
}

// A row's sum with eight independent partial sums, so that it vectorises
// without -ffast-math; the raw baselines and the reference use it.
double row_sum(double const* row, std::size_t cols) {
  double partial[8] = {};
  std::size_t j = 0;
  for (; j + 8 <= cols; j += 8)
    for (int k = 0; k < 8; ++k) partial[k] += row[j + static_cast<std::size_t>(k)];
  double s = 0;
  for (double p : partial) s += p;
  for (; j < cols; ++j) s += row[j];
  return s;
}

void reduce_rows(double const* x, double* out, std::size_t cols, std::size_t begin, std::size_t end) {
  for (std::size_t r = begin; r < end; ++r) out[r] = row_sum(x + r * cols, cols);
}

// ------------------------------------------------------- pool task bodies
// A pool's workers started before the tasks were made, so they reach the
// arrays by name (xjob::ipc::shared_memory) and keep each mapping for the
// next task, as a long-lived worker should: mapping per task would pay the
// page faults of the whole array again every call.

double* attached(std::string const& name) {
  static std::unordered_map<std::string, xjob::ipc::shared_memory> mappings;
  auto it = mappings.find(name);
  if (it == mappings.end()) it = mappings.emplace(name, xjob::ipc::shared_memory::attach(name)).first;
  return reinterpret_cast<double*>(it->second.data());
}

// The map's expression as the xjob rows compute it (xtensor, vectorised by
// xsimd). The pool rows compute it too, so that they differ from the backend
// rows only in how the work reaches the workers; map_range, which the
// baselines run, is GCC's auto-vectorised loop, ~5-10% slower here.
auto map_expression(auto const& in) { return xt::sqrt(in) * 2.0 + 1.0; }

// Whether xjob's map_chunks writes this map's output with streaming stores
// (its default, `automatic`, or XJOB_STREAMING_STORES): the pool tasks then
// do so too, or the rows would compare store kinds, not backends. Asked of
// map_chunks' own rule, so the two cannot drift apart.
bool xjob_streams(std::size_t output_bytes) {
  return xjob::detail::streaming_for<double>(xjob::parallel(), output_bytes).has_value();
}

std::size_t map_pool_task(std::string const& x_name, std::string const& y_name, std::size_t begin, std::size_t end,
                          bool stream) {
  if (stream) {
    map_range_streaming(attached(x_name), attached(y_name), begin, end);
    return end - begin;
  }
  std::array<std::size_t, 1> const shape{end - begin};
  auto out = xt::adapt(attached(y_name) + begin, end - begin, xt::no_ownership(), shape);
  // noalias: a plain `=` on an adaptor evaluates into a temporary first
  // (xtensor's guard against aliasing); xjob's output adaptor never does.
  xt::noalias(out) = map_expression(xt::adapt(attached(x_name) + begin, end - begin, xt::no_ownership(), shape));
  return end - begin;
}

std::size_t reduce_pool_task(std::string const& x_name, std::string const& out_name, std::size_t cols,
                             std::size_t begin, std::size_t end) {
  reduce_rows(attached(x_name), attached(out_name), cols, begin, end);
  return end - begin;
}

unsigned __int128 sum_squares_task(long begin, long end) { return sum_squares(begin, end); }

digest md5_task(long chain, long rounds) { return md5_chain(fmt::format("Hello World {}", chain), rounds); }

// Trivial, but opaque: the compiler can neither inline it nor see through it.
__attribute__((noinline)) int tiny(int i) {
  asm volatile("" : "+r"(i));
  return i ^ 0x5a;
}

long sleep_task(long i, long ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return i;
}

// ------------------------------------------------------- variant builders

// Which sweep dimensions a workload varies; the others stay unset ("-").
struct dimensions {
  bool chunks = false;   // sweep chunk sizes
  bool batches = false;  // sweep batch sizes
};

std::vector<std::optional<std::size_t>> values_of(bool sweep, std::vector<std::optional<std::size_t>> const& values) {
  return sweep ? values : std::vector<std::optional<std::size_t>>{std::nullopt};
}

std::string dimension_text(bool sweep, std::optional<std::size_t> value) { return sweep ? size_text(value) : "-"; }

std::string backend_label(std::string const& backend) {
  return backend;
}

std::string pool_label(xjob::start_method method) { return fmt::format("pool ({})", xjob::to_string(method)); }

// One xjob variant per backend, n_jobs and swept chunk/batch size.
// `define(v, par, chunk, batch)` sets v.work and v.run.
template <class Define>
void add_xjob_variants(workload& w, bench_context& c, dimensions d, Define define) {
  auto const& s = c.settings();
  for (std::string const& backend : s.backends)
    for (int n : s.n_jobs) {
      if (backend == "sequential" && n != 1) continue;
      for (auto chunk : values_of(d.chunks, s.chunk_sizes))
        for (auto batch : values_of(d.batches, s.batch_sizes)) {
          auto par = std::make_shared<xjob::parallel>(
              xjob::parallel_options{.n_jobs = n, .backend = backend, .batch_size = batch, .chunk_size = chunk});
          variant v("xjob", backend_label(backend), n, dimension_text(d.chunks, chunk), dimension_text(d.batches, batch));
          define(v, par, chunk, batch);
          w.variants.push_back(std::move(v));
        }
    }
}

// One variant per pool start method, n_jobs and swept size. The pool is
// made at its first run (the untimed warm-up) and kept.
// `define(v, get_pool, chunk, batch)` sets v.work and v.run.
template <class Define>
void add_pool_variants(workload& w, bench_context& c, dimensions d, Define define) {
  auto const& s = c.settings();
  for (xjob::start_method method : s.pool_methods)
    for (int n : s.n_jobs)
      for (auto chunk : values_of(d.chunks, s.chunk_sizes))
        for (auto batch : values_of(d.batches, s.batch_sizes)) {
          variant v("xjob", pool_label(method), n, dimension_text(d.chunks, chunk), dimension_text(d.batches, batch));
          auto get_pool = [&c, method, n]() -> xjob::process_pool& { return c.pool(method, n); };
          define(v, get_pool, chunk, batch);
          w.variants.push_back(std::move(v));
        }
}

// One baseline variant per n_jobs (or just n_jobs = 1).
template <class Define>
void add_baseline(workload& w, bench_context& c, std::string const& name, bool every_n_jobs, double work,
                  Define define) {
  if (!c.settings().baselines) return;
  for (int n : c.settings().n_jobs) {
    if (!every_n_jobs && n != 1) continue;
    variant v("baseline", name, every_n_jobs ? n : 1, "-", "-", work);
    v.run = define(n);
    w.variants.push_back(std::move(v));
  }
  if (!every_n_jobs && std::ranges::find(c.settings().n_jobs, 1) == c.settings().n_jobs.end()) {
    variant v("baseline", name, 1, "-", "-", work);
    v.run = define(1);
    w.variants.push_back(std::move(v));
  }
}

// What one joblib request of a workload asks for.
struct joblib_request {
  nlohmann::json size;        // {"elements": 1024}
  std::size_t chunk = 0;      // elements/rows/numbers per task; 0: not sent
  double work = 0;            // the request's work, in the workload's units
};

// One joblib variant per joblib backend, n_jobs and swept size.
// `request(n_jobs, chunk, batch)` says what to ask for.
// `leave_out`: joblib backends the workload has no row for.
template <class Request>
void add_joblib_variants(workload& w, bench_context& c, dimensions d, Request request,
                         std::vector<std::string> const& leave_out = {}) {
  joblib_client* const client = c.joblib();
  if (client == nullptr) return;
  auto const& s = c.settings();
  for (std::string const& backend : s.joblib_backends)
    for (int n : s.n_jobs) {
      if (std::ranges::find(leave_out, backend) != leave_out.end()) continue;
      // joblib runs n_jobs = 1 sequentially whatever the backend: one row.
      bool const sequential = n == 1;
      if (sequential && backend != s.joblib_backends.front()) continue;
      for (auto chunk : values_of(d.chunks, s.chunk_sizes))
        for (auto batch : values_of(d.batches, s.batch_sizes)) {
          joblib_request const r = request(n, chunk, batch);
          nlohmann::json const message = {
              {"workload", w.name},
              {"backend", backend},
              {"n_jobs", n},
              {"batch_size", batch ? nlohmann::json(*batch) : nlohmann::json("auto")},
              {"chunk", r.chunk},
              {"size", r.size},
              {"dir", s.shm_dir},
              {"npy_dir", s.npy_dir},
          };
          variant v("joblib", sequential ? std::string("joblib sequential") : "joblib " + backend, n,
                    d.chunks ? (chunk ? std::to_string(*chunk) : fmt::format("{} (auto)", r.chunk)) : "-",
                    dimension_text(d.batches, batch), r.work);
          v.run = [client, message] {
            joblib_client::reply const reply = client->run(message, std::chrono::seconds(900));
            if (!reply.error.empty()) throw std::runtime_error("joblib: " + reply.error);
            return run_result{*reply.seconds, reply.result, reply.tasks};
          };
          w.variants.push_back(std::move(v));
        }
    }
}

// ------------------------------------------------------------ elementwise

// Where a map's output goes: a warm shared_array; a new one nobody has
// touched each run (xjob's cache of freed shared memory emptied first), to
// price first-touch page faults against raw TBB into fresh malloc memory; a
// new .npy file on disk each run (create_npy); or a new resumable one
// (resume_npy), whose journaling the baselines, plain .npy files, price.
enum class map_output { warm, cold, npy, resumable_npy };

// y = sqrt(x)*2+1 over a large float64 array (memory-bound), into `output`.
class map_workload : public workload {
 public:
  map_workload(bench_context& c, map_output output)
      : c_(c), output_(output), to_npy_(output == map_output::npy || output == map_output::resumable_npy),
        n_(to_npy_ ? c.settings().sizes.npy_elements : c.settings().sizes.map_elements),
        x_({n_}, xjob::uninitialized),
        pool_x_(n_ * sizeof(double)),
        pool_y_(output == map_output::warm ? n_ * sizeof(double) : sizeof(double)) {
    double const gib = static_cast<double>(n_ * sizeof(double)) / double(1 << 30);
    name = output == map_output::warm   ? "map"
           : output == map_output::cold ? "cold"
           : output == map_output::npy  ? "npy"
                                        : "resume";
    title = output == map_output::warm ? "elementwise map y = sqrt(x)*2+1"
            : output == map_output::cold
                ? "the same map into a cold output: a new shared_array nobody touched (cache trimmed), "
                  "baselines into fresh malloc memory"
            : output == map_output::npy ? "map_chunks into a new .npy file on disk"
                                        : "map_chunks into a new resumable .npy file on disk (resume_npy)";
    unit = "GB/s";
    unit_scale = 1e9;
    memory_bound = true;
    exact = false;
    size_text = fmt::format("{} float64 ({:.3g} GiB in + {:.3g} GiB out{})", n_, gib, gib,
                            to_npy_ ? ", output a .npy file" : "");
    fill_input(x(), n_, c.setup_arena());
    std::memcpy(pool_x_.data(), x(), n_ * sizeof(double));
    ref_ = std::make_unique_for_overwrite<double[]>(n_);
    map_range(x(), ref_.get(), 0, n_);
    reference = number_text(checksum(ref_.get(), n_));
    if (output == map_output::warm) warm_ = xjob::shared_array<double>({n_});
    define_variants();
  }

 private:
  double* x() const { return x_.data(); }
  auto x_view() const { return xt::adapt(x(), n_, xt::no_ownership(), std::array<std::size_t, 1>{n_}); }

  std::filesystem::path npy_path(std::string const& who) const {
    return std::filesystem::path(c_.settings().npy_dir) / fmt::format("xjob-bench-{}-{}.npy", ::getpid(), who);
  }

  // Checks a run's output against `expected` (the sequential map's, unless
  // given) and returns the checksum it thereby has.
  run_result finish(std::string const& who, double seconds, double const* y, std::size_t tasks,
                    double const* expected = nullptr) {
    bool const exact_copy = expected != nullptr;
    check_elements(fmt::format("{} ({})", title, who), y, exact_copy ? expected : ref_.get(), n_,
                   exact_copy ? 0 : 4e-16, c_.setup_arena());
    return {seconds, reference, tasks};
  }

  // A run into the warm output (poisoned first) or into a new .npy file of
  // the workload's kind (made, filled and committed in the timed part, then
  // checked and removed).
  template <class Body>
  run_result run_into_output(std::string const& who, std::size_t tasks, Body body, double const* expected = nullptr) {
    if (output_ == map_output::warm) {
      fill_nan(warm_.data(), n_);
      double const seconds = timed([&] { body(warm_); });
      return finish(who, seconds, warm_.data(), tasks, expected);
    }
    if (output_ == map_output::cold) {
      // Made in the timed part, as y = par.map_chunks(x, f) makes its
      // output; freed outside it.
      xjob::trim_shared_memory_cache();
      xjob::shared_array<double> y;
      double const seconds = timed([&] {
        y = xjob::shared_array<double>({n_}, xjob::uninitialized);
        body(y);
      });
      return finish(who, seconds, y.data(), tasks, expected);
    }
    return run_into_file(who, tasks, body, output_, false, expected);
  }

  // A raw baseline into new private memory from malloc (glibc maps a block
  // this large from the kernel, so every page faults at its first write),
  // allocated in the timed part and freed outside it.
  template <class Body>
  run_result run_into_malloc(std::string const& who, Body body) {
    std::unique_ptr<double[]> y;
    double const seconds = timed([&] {
      y = std::make_unique_for_overwrite<double[]>(n_);
      body(y.get());
    });
    return finish(who, seconds, y.get(), 0);
  }

  // The same into a new .npy file of kind `kind`; with `write_back`, the
  // file's data are written back to disk (msync) before its commit, as a
  // resumable output's are.
  template <class Body>
  run_result run_into_file(std::string const& who, std::size_t tasks, Body body, map_output kind, bool write_back,
                           double const* expected = nullptr) {
    std::filesystem::path const path = npy_path(who);
    xjob::shared_array<double> file;
    double const seconds = timed([&] {
      file = kind == map_output::resumable_npy ? xjob::shared_array<double>::resume_npy(path, {n_})
                                               : xjob::shared_array<double>::create_npy(path, {n_});
      body(file);
      if (write_back) xjob::detail::write_back(file.data(), file.bytes());
      file.commit();
    });
    run_result const out = finish(who, seconds, file.data(), tasks, expected);
    file = xjob::shared_array<double>();
    std::filesystem::remove(path);
    return out;
  }

  std::size_t auto_chunk(int n_jobs) const {
    std::array<std::size_t, 1> const shape{n_};
    return xjob::auto_chunk_extent(shape, 0, sizeof(double), n_jobs);
  }

  void define_variants() {
    double const bytes = 2.0 * static_cast<double>(n_) * sizeof(double);
    auto f = [](auto const& in, auto&& out) { out = map_expression(in); };

    add_xjob_variants(*this, c_, {.chunks = true}, [&](variant& v, auto par, auto chunk, auto) {
      v.work = bytes;
      std::size_t const size = chunk ? *chunk : auto_chunk(v.n_jobs);
      std::size_t const tasks = (n_ + size - 1) / size;
      std::string const who = fmt::format("xjob {} n_jobs={} chunk={}", v.backend, v.n_jobs, v.chunk);
      v.run = [this, par, f, who, tasks] {
        return run_into_output(who, tasks, [&](xjob::shared_array<double>& y) { par->map_chunks(x_view(), f, y); });
      };
    });

    if (output_ == map_output::warm) {
      // The npy workloads have no pool rows: a pool worker would have to map
      // the output file by its path, which xjob does not offer for writing;
      // nor the cold one, whose point is xjob's own new output.
      add_pool_variants(*this, c_, {.chunks = true}, [&](variant& v, auto get_pool, auto chunk, auto) {
        v.work = bytes;
        std::size_t const size = chunk ? *chunk : auto_chunk(v.n_jobs);
        std::string const who = fmt::format("xjob {} n_jobs={} chunk={}", v.backend, v.n_jobs, v.chunk);
        bool const stream = xjob_streams(n_ * sizeof(double));
        v.run = [this, get_pool, size, who, stream] {
          fill_nan(pool_y(), n_);
          // The task list is made before the clock starts, as xjob's rows
          // plan their chunks inside the call but never allocate per chunk.
          std::vector<std::tuple<std::string, std::string, std::size_t, std::size_t, bool>> args;
          for (auto [begin, end] : ranges_of(n_, size))
            args.emplace_back(pool_x_.name(), pool_y_.name(), begin, end, stream);
          double const seconds = timed([&] { get_pool().starmap(map_pool_task, args); });
          return finish(who, seconds, pool_y(), args.size());
        };
      });
    }

    if (output_ == map_output::resumable_npy) {
      // What journaling costs: the same xjob call into a plain .npy file,
      // and into one written back to disk before its commit, which is
      // what a resumable output does, chunk by chunk.
      for (bool const write_back : {false, true})
        add_baseline(*this, c_, write_back ? "xjob into create_npy, msync" : "xjob into create_npy", true, bytes,
                     [this, write_back, f](int n) {
                       auto par = std::make_shared<xjob::parallel>(
                           xjob::parallel_options{.n_jobs = n, .backend = "threads"});
                       std::string const who = write_back ? "create_npy-msync" : "create_npy";
                       return std::function<run_result()>([this, par, f, who, write_back] {
                         return run_into_file(
                             who, 0, [&](xjob::shared_array<double>& y) { par->map_chunks(x_view(), f, y); },
                             map_output::npy, write_back);
                       });
                     });
      return;
    }

    if (output_ == map_output::cold) {
      // What a program without xjob pays for a new output: raw TBB and
      // OpenMP into fresh malloc memory; and raw TBB into a new shared_array,
      // what the same faults cost on shared memory.
      add_baseline(*this, c_, "raw TBB, fresh malloc", true, bytes, [this](int n) {
        return std::function<run_result()>([this, n] {
          return run_into_malloc("raw TBB, fresh malloc", [&](double* out) { raw_tbb_map(n, out); });
        });
      });
      add_baseline(*this, c_, "OpenMP, fresh malloc", true, bytes, [this](int n) {
        return std::function<run_result()>(
            [this, n] { return run_into_malloc("OpenMP, fresh malloc", [&](double* out) { map_omp(x(), out, n_, n); }); });
      });
      add_baseline(*this, c_, "raw TBB, cold shared_array", true, bytes, [this](int n) {
        return std::function<run_result()>([this, n] {
          return run_into_output("raw TBB, cold shared_array", 0,
                                 [&](xjob::shared_array<double>& y) { raw_tbb_map(n, y.data()); });
        });
      });
      return;
    }

    // Baselines write through the same output (the warm buffer, or a new
    // .npy file each run), so they pay what the xjob rows pay.
    add_baseline(*this, c_, "plain loop", false, bytes, [this](int) {
      return std::function<run_result()>([this] {
        return run_into_output("plain loop", 1, [&](xjob::shared_array<double>& y) { map_range(x(), y.data(), 0, n_); });
      });
    });
    add_baseline(*this, c_, "raw TBB", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        return run_into_output("raw TBB", 0, [&](xjob::shared_array<double>& y) { raw_tbb_map(n, y.data()); });
      });
    });
    // The same with streaming stores (no read for ownership of the output):
    // the ceiling of the rows that stream, as xjob's do past the cache.
    if (!to_npy_)
      add_baseline(*this, c_, "raw TBB streaming", true, bytes, [this](int n) {
        return std::function<run_result()>([this, n] {
          return run_into_output("raw TBB streaming", 0, [&](xjob::shared_array<double>& y) {
            double* const out = y.data();
            c_.arena(n).execute([&] {
              tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_),
                                [&](auto const& r) { map_range_streaming(x(), out, r.begin(), r.end()); });
            });
          });
        });
      });

    add_baseline(*this, c_, "OpenMP", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        return run_into_output("OpenMP", 0, [&](xjob::shared_array<double>& y) { map_omp(x(), y.data(), n_, n); });
      });
    });
    // The bandwidth ceiling: the same bytes copied, not computed.
    add_baseline(*this, c_, "STREAM copy", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        return run_into_output("STREAM copy", 0, [&](xjob::shared_array<double>& y) {
          double* const out = y.data();
          c_.arena(n).execute([&] {
            tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_),
                              [&](auto const& r) { copy_range(x(), out, r.begin(), r.end()); });
          });
        }, x());
      });
    });

    add_joblib_variants(*this, c_, {.chunks = true}, [&](int n_jobs, auto chunk, auto) {
      return joblib_request{.size = {{"elements", n_}},
                            .chunk = chunk ? *chunk : auto_chunk(n_jobs),
                            .work = bytes};
    });
  }

  // The raw oneTBB baseline: the map by tbb::parallel_for in an arena of n.
  void raw_tbb_map(int n, double* out) {
    c_.arena(n).execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_),
                        [&](auto const& r) { map_range(x(), out, r.begin(), r.end()); });
    });
  }

  static void map_omp(double const* __restrict in, double* __restrict out, std::size_t n, int threads) {
    auto const count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (std::ptrdiff_t i = 0; i < count; ++i) out[i] = std::sqrt(in[i]) * 2.0 + 1.0;
  }

  double* pool_y() const { return reinterpret_cast<double*>(pool_y_.data()); }

  bench_context& c_;
  map_output output_;
  bool to_npy_;
  std::size_t n_;
  // The input: a shared_array, which warm workers of the processes backend
  // map as they are (an input xjob did not allocate, an ipc block, would be
  // copied into shared memory at every call), and the same data in a
  // named ipc block for the pool rows' workers, which started before it.
  xjob::shared_array<double> x_;
  xjob::ipc::shared_memory pool_x_;
  xjob::ipc::shared_memory pool_y_;  // the pool rows' output
  xjob::shared_array<double> warm_;  // the other rows' output
  std::unique_ptr<double[]> ref_;
};

// ------------------------------------------------------------ row reduction

// The sum of each row of a large rows x cols float64 matrix.
class reduce_workload : public workload {
 public:
  explicit reduce_workload(bench_context& c)
      : c_(c), rows_(c.settings().sizes.reduce_rows), cols_(c.settings().sizes.reduce_cols),
        x_({rows_ * cols_}, xjob::uninitialized), pool_x_(rows_ * cols_ * sizeof(double)),
        pool_out_(rows_ * sizeof(double)), out_({rows_}) {
    name = "rowreduce";
    title = "row sums of a rows x cols matrix";
    unit = "GB/s";
    unit_scale = 1e9;
    memory_bound = true;
    exact = false;
    size_text = fmt::format("{} x {} float64 ({:.3g} GiB in)", rows_, cols_,
                            static_cast<double>(rows_ * cols_ * sizeof(double)) / double(1 << 30));
    fill_input(x(), rows_ * cols_, c_.setup_arena());
    std::memcpy(pool_x_.data(), x(), rows_ * cols_ * sizeof(double));
    ref_.resize(rows_);
    reduce_rows(x(), ref_.data(), cols_, 0, rows_);
    reference = number_text(checksum(ref_.data(), rows_));
    define_variants();
  }

 private:
  double* x() const { return x_.data(); }

  template <class Body>
  run_result run_into(std::string const& who, double* out, std::size_t tasks, Body body) {
    fill_nan(out, rows_);
    double const seconds = timed(body);
    // Sums in another order differ in the last bits.
    check_elements(fmt::format("{} ({})", title, who), out, ref_.data(), rows_, 1e-12, c_.setup_arena());
    return {seconds, reference, tasks};
  }

  std::size_t auto_chunk(int n_jobs) const {
    std::array<std::size_t, 2> const shape{rows_, cols_};
    return xjob::auto_chunk_extent(shape, 0, sizeof(double), n_jobs);
  }

  void define_variants() {
    double const bytes = static_cast<double>((rows_ * cols_ + rows_) * sizeof(double));
    auto x_view = [this] {
      return xt::adapt(x(), rows_ * cols_, xt::no_ownership(), std::array<std::size_t, 2>{rows_, cols_});
    };
    // The chunk's rows through the same kernel as the raw baselines, so the
    // rows compare the backends; xt::sum(in, {1}) would run at about half
    // its speed here (see the README).
    auto f = [](auto const& in, auto&& out) { reduce_rows(in.data(), out.data(), in.shape()[1], 0, in.shape()[0]); };

    add_xjob_variants(*this, c_, {.chunks = true}, [&](variant& v, auto par, auto chunk, auto) {
      v.work = bytes;
      std::size_t const size = chunk ? *chunk : auto_chunk(v.n_jobs);
      std::size_t const tasks = (rows_ + size - 1) / size;
      v.run = [this, par, f, x_view, tasks, who = v.backend] {
        return run_into(who, out_.data(), tasks, [&] { par->map_chunks(x_view(), f, out_); });
      };
    });
    add_pool_variants(*this, c_, {.chunks = true}, [&](variant& v, auto get_pool, auto chunk, auto) {
      v.work = bytes;
      std::size_t const size = chunk ? *chunk : auto_chunk(v.n_jobs);
      std::size_t const tasks = (rows_ + size - 1) / size;
      v.run = [this, get_pool, size, tasks, who = v.backend] {
        // The task list is made before the clock starts (see map_workload).
        std::vector<std::tuple<std::string, std::string, std::size_t, std::size_t, std::size_t>> args;
        for (auto [begin, end] : ranges_of(rows_, size)) args.emplace_back(pool_x_.name(), pool_out_.name(), cols_, begin, end);
        return run_into(who, reinterpret_cast<double*>(pool_out_.data()), tasks,
                        [&] { get_pool().starmap(reduce_pool_task, args); });
      };
    });
    add_baseline(*this, c_, "plain loop", false, bytes, [this](int) {
      return std::function<run_result()>([this] {
        return run_into("plain loop", out_.data(), 1, [&] { reduce_rows(x(), out_.data(), cols_, 0, rows_); });
      });
    });
    add_baseline(*this, c_, "raw TBB", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        return run_into("raw TBB", out_.data(), 0, [&] {
          c_.arena(n).execute([&] {
            tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows_),
                              [&](auto const& r) { reduce_rows(x(), out_.data(), cols_, r.begin(), r.end()); });
          });
        });
      });
    });
    add_baseline(*this, c_, "OpenMP", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        return run_into("OpenMP", out_.data(), 0, [&] { reduce_omp(x(), out_.data(), rows_, cols_, n); });
      });
    });
    // The bandwidth ceiling of reading: one sum over the whole matrix.
    add_baseline(*this, c_, "STREAM read", true, bytes, [this](int n) {
      return std::function<run_result()>([this, n] {
        std::atomic<long> rows_read{0};
        double const seconds = timed([&] {
          c_.arena(n).execute([&] {
            tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows_), [&](auto const& r) {
              double const s = row_sum(x() + r.begin() * cols_, (r.end() - r.begin()) * cols_);
              asm volatile("" : : "x"(s));
              rows_read += static_cast<long>(r.end() - r.begin());
            });
          });
        });
        if (rows_read.load() != static_cast<long>(rows_)) throw std::runtime_error("STREAM read missed rows");
        return run_result{seconds, reference, 0};
      });
    });
    add_joblib_variants(*this, c_, {.chunks = true}, [&](int n_jobs, auto chunk, auto) {
      return joblib_request{.size = {{"rows", rows_}, {"cols", cols_}},
                            .chunk = chunk ? *chunk : auto_chunk(n_jobs),
                            .work = bytes};
    });
  }

  static void reduce_omp(double const* x, double* out, std::size_t rows, std::size_t cols, int threads) {
    auto const count = static_cast<std::ptrdiff_t>(rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::ptrdiff_t r = 0; r < count; ++r) out[r] = row_sum(x + static_cast<std::size_t>(r) * cols, cols);
  }

  bench_context& c_;
  std::size_t rows_, cols_;
  xjob::shared_array<double> x_;     // see map_workload
  xjob::ipc::shared_memory pool_x_;
  xjob::ipc::shared_memory pool_out_;
  xjob::shared_array<double> out_;
  std::vector<double> ref_;
};

// ------------------------------------------------------------ whole sum

// The sum of a large float64 array: xjob's reduce_chunks, bitwise the same
// on every backend and n_jobs, against the raw reductions of oneTBB (the
// usual one, and the deterministic one on chunks as large as xjob's) and
// OpenMP, and NumPy's sum of each chunk through joblib. Every row sums a
// chunk with the same kernel (row_sum), so the rows compare how the chunks
// are shared out and combined.
class sum_workload : public workload {
 public:
  explicit sum_workload(bench_context& c)
      : c_(c), n_(c.settings().sizes.sum_elements), x_({n_}, xjob::uninitialized) {
    name = "sum";
    title = "sum of a float64 array";
    unit = "GB/s";
    unit_scale = 1e9;
    memory_bound = true;
    exact = false;
    size_text = fmt::format("{} float64 ({:.3g} GiB)", n_, static_cast<double>(n_ * sizeof(double)) / double(1 << 30));
    fill_input(x(), n_, c_.setup_arena());
    reference = number_text(checksum(x(), n_));
    define_variants();
  }

 private:
  double* x() const { return x_.data(); }

  // xjob's automatic chunk for a reduction, whatever n_jobs is.
  std::size_t auto_chunk() const {
    std::array<std::size_t, 1> const shape{n_};
    return xjob::auto_chunk_extent(shape, 0, sizeof(double), xjob::detail::reduction_reference_workers);
  }

  void define_variants() {
    double const bytes = static_cast<double>(n_ * sizeof(double));
    add_xjob_variants(*this, c_, {.chunks = true}, [&](variant& v, auto par, auto chunk, auto) {
      v.work = bytes;
      std::size_t const size = chunk ? *chunk : auto_chunk();
      std::size_t const tasks = (n_ + size - 1) / size;
      std::string const who = fmt::format("xjob {} n_jobs={} chunk={}", v.backend, v.n_jobs, v.chunk);
      v.run = [this, par, tasks, who, chunk_text = v.chunk] {
        double total = 0;
        double const seconds = timed([&] {
          total = par->reduce_chunks(std::as_const(x_), [](auto const& c) { return row_sum(c.data(), c.size()); }, 0.0,
                                     std::plus<>{});
        });
        // Every xjob row with the same chunk size must give the same bits.
        auto [first, fresh] = xjob_sums_.try_emplace(chunk_text, total);
        if (!fresh && std::bit_cast<std::uint64_t>(first->second) != std::bit_cast<std::uint64_t>(total))
          throw std::runtime_error(fmt::format("{}: the sum is {}, another xjob row gave {}: not deterministic", who,
                                               number_text(total), number_text(first->second)));
        return run_result{seconds, number_text(total), tasks};
      };
    });
    auto row = [this](double seconds, double total) { return run_result{seconds, number_text(total), 0}; };
    add_baseline(*this, c_, "plain loop", false, bytes, [this, row](int) {
      return std::function<run_result()>([this, row] {
        double total = 0;
        double const seconds = timed([&] { total = row_sum(x(), n_); });
        return row(seconds, total);
      });
    });
    add_baseline(*this, c_, "raw TBB", true, bytes, [this, row](int n) {
      return std::function<run_result()>([this, row, n] {
        double total = 0;
        double const seconds = timed([&] {
          c_.arena(n).execute([&] {
            total = tbb::parallel_reduce(
                tbb::blocked_range<std::size_t>(0, n_), 0.0,
                [&](auto const& r, double s) { return s + row_sum(x() + r.begin(), r.size()); }, std::plus<>{});
          });
        });
        return row(seconds, total);
      });
    });
    // Reproducible too, but only for one grain: chunks of xjob's size.
    add_baseline(*this, c_, "raw TBB deterministic", true, bytes, [this, row](int n) {
      return std::function<run_result()>([this, row, n] {
        double total = 0;
        std::size_t const grain = auto_chunk();
        double const seconds = timed([&] {
          c_.arena(n).execute([&] {
            total = tbb::parallel_deterministic_reduce(
                tbb::blocked_range<std::size_t>(0, n_, grain), 0.0,
                [&](auto const& r, double s) { return s + row_sum(x() + r.begin(), r.size()); }, std::plus<>{});
          });
        });
        return row(seconds, total);
      });
    });
    add_baseline(*this, c_, "OpenMP reduction", true, bytes, [this, row](int n) {
      return std::function<run_result()>([this, row, n] {
        double total = 0;
        double const seconds = timed([&] { total = sum_omp(x(), n_, n); });
        return row(seconds, total);
      });
    });
    add_joblib_variants(*this, c_, {.chunks = true}, [&](int, auto chunk, auto) {
      return joblib_request{.size = {{"elements", n_}}, .chunk = chunk ? *chunk : auto_chunk(), .work = bytes};
    });
  }

  // `simd`: lets OpenMP reorder the sum into vector lanes, as row_sum's
  // eight partial sums do.
  static double sum_omp(double const* x, std::size_t n, int threads) {
    auto const count = static_cast<std::ptrdiff_t>(n);
    double s = 0;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : s)
    for (std::ptrdiff_t i = 0; i < count; ++i) s += x[i];
    return s;
  }

  bench_context& c_;
  std::size_t n_;
  xjob::shared_array<double> x_;  // shared: warm workers map it as it is
  std::map<std::string, double> xjob_sums_;
};

// ------------------------------------------------------ compute-bound tasks

// Seed 4: the 128-bit sum of i*i for i < count, cut into `tasks` ranges.
class sumsq_workload : public workload {
 public:
  explicit sumsq_workload(bench_context& c) : c_(c), count_(c.settings().sizes.sumsq_count) {
    name = "sumsq";
    title = "128-bit sum of squares (seed 4)";
    unit = "Mitems/s";
    unit_scale = 1e6;
    size_text = fmt::format("i*i for i < {}, {} tasks", count_, c.settings().sizes.sumsq_tasks);
    reference = to_decimal(sum_squares_closed_form(count_));
    for (auto [begin, end] : ranges_of(static_cast<std::size_t>(count_),
                                       static_cast<std::size_t>((count_ + c.settings().sizes.sumsq_tasks - 1) /
                                                                c.settings().sizes.sumsq_tasks)))
      ranges_.emplace_back(static_cast<long>(begin), static_cast<long>(end));
    define_variants();
  }

 private:
  static std::string total(std::vector<unsigned __int128> const& parts) {
    unsigned __int128 s = 0;
    for (auto p : parts) s += p;
    return to_decimal(s);
  }

  void define_variants() {
    double const items = static_cast<double>(count_);
    std::size_t const tasks = ranges_.size();
    add_xjob_variants(*this, c_, {}, [&](variant& v, auto par, auto, auto) {
      v.work = items;
      v.run = [this, par, tasks] {
        std::vector<unsigned __int128> parts;
        double const seconds = timed([&] {
          parts = (*par)(ranges_ | std::views::transform([](auto r) { return xjob::delayed(sum_squares_task)(r.first, r.second); }));
        });
        return run_result{seconds, total(parts), tasks};
      };
    });
    add_pool_variants(*this, c_, {}, [&](variant& v, auto get_pool, auto, auto) {
      v.work = items;
      v.run = [this, get_pool, tasks] {
        std::vector<unsigned __int128> parts;
        double const seconds = timed([&] { parts = get_pool().starmap(sum_squares_task, ranges_, 1); });
        return run_result{seconds, total(parts), tasks};
      };
    });
    add_baseline(*this, c_, "plain loop", false, items, [this](int) {
      return std::function<run_result()>([this] {
        unsigned __int128 s = 0;
        double const seconds = timed([&] { s = sum_squares(0, count_); });
        return run_result{seconds, to_decimal(s), 1};
      });
    });
    // Raw threads: one contiguous share of the numbers per thread.
    add_baseline(*this, c_, "raw std::thread", true, items, [this](int n) {
      return std::function<run_result()>([this, n] {
        std::vector<unsigned __int128> parts(static_cast<std::size_t>(n));
        double const seconds = timed([&] {
          std::vector<std::thread> threads;
          for (int t = 0; t < n; ++t)
            threads.emplace_back([&, t] {
              long const begin = count_ * t / n;
              long const end = count_ * (t + 1) / n;
              parts[static_cast<std::size_t>(t)] = sum_squares(begin, end);
            });
          for (auto& thread : threads) thread.join();
        });
        return run_result{seconds, total(parts), static_cast<std::size_t>(n)};
      });
    });
    add_baseline(*this, c_, "raw TBB", true, items, [this](int n) {
      return std::function<run_result()>([this, n] {
        std::vector<unsigned __int128> parts(ranges_.size());
        double const seconds = timed([&] {
          c_.arena(n).execute([&] {
            tbb::parallel_for(std::size_t(0), ranges_.size(),
                              [&](std::size_t k) { parts[k] = sum_squares(ranges_[k].first, ranges_[k].second); });
          });
        });
        return run_result{seconds, total(parts), ranges_.size()};
      });
    });
    add_baseline(*this, c_, "OpenMP", true, items, [this](int n) {
      return std::function<run_result()>([this, n] {
        std::vector<unsigned __int128> parts(ranges_.size());
        double const seconds = timed([&] {
          auto const count = static_cast<std::ptrdiff_t>(ranges_.size());
#pragma omp parallel for num_threads(n) schedule(dynamic, 1)
          for (std::ptrdiff_t k = 0; k < count; ++k)
            parts[static_cast<std::size_t>(k)] = sum_squares(ranges_[static_cast<std::size_t>(k)].first,
                                                             ranges_[static_cast<std::size_t>(k)].second);
        });
        return run_result{seconds, total(parts), ranges_.size()};
      });
    });
    // Pure Python loops run ~50x slower than this one: joblib gets a 64th of
    // the numbers (the same task count), and compares in items per second.
    long const joblib_count = std::max(1L, count_ / 64);
    long const tasks_wanted = c_.settings().sizes.sumsq_tasks;
    add_joblib_variants(*this, c_, {}, [&](int, auto, auto) {
      return joblib_request{.size = {{"count", joblib_count}},
                            .chunk = static_cast<std::size_t>((joblib_count + tasks_wanted - 1) / tasks_wanted),
                            .work = static_cast<double>(joblib_count)};
    });
  }

 public:
  // joblib's runs cover fewer numbers: their own closed form.
  [[nodiscard]] std::string expected(variant const& v) const override {
    return to_decimal(sum_squares_closed_form(static_cast<long>(v.work)));
  }

 private:
  bench_context& c_;
  long count_;
  std::vector<std::pair<long, long>> ranges_;
};

// Seed 3: `chains` independent MD5 chains of `rounds` rounds, one task each.
class md5_workload : public workload {
 public:
  explicit md5_workload(bench_context& c)
      : c_(c), chains_(c.settings().sizes.md5_chains), rounds_(c.settings().sizes.md5_rounds) {
    name = "md5";
    title = "chained MD5 (seed 3)";
    unit = "Mhash/s";
    unit_scale = 1e6;
    size_text = fmt::format("{} chains x {} rounds from \"Hello World <chain>\"", chains_, rounds_);
    md5_algorithm();  // fetched before any worker starts
    std::vector<digest> digests;
    for (long j = 0; j < chains_; ++j) digests.push_back(md5_task(j, rounds_));
    reference = joined(digests);
    define_variants();
  }

 private:
  static std::string joined(std::vector<digest> const& digests) {
    std::string out;
    for (auto const& d : digests) {
      if (!out.empty()) out += ',';
      out += hex(d);
    }
    return out;
  }

  void define_variants() {
    double const hashes = static_cast<double>(chains_ * rounds_);
    auto const tasks = static_cast<std::size_t>(chains_);
    add_xjob_variants(*this, c_, {}, [&](variant& v, auto par, auto, auto) {
      v.work = hashes;
      v.run = [this, par, tasks] {
        std::vector<digest> digests;
        double const seconds = timed([&] {
          digests = (*par)(std::views::iota(0L, chains_) |
                           std::views::transform([this](long j) { return xjob::delayed(md5_task)(j, rounds_); }));
        });
        return run_result{seconds, joined(digests), tasks};
      };
    });
    add_pool_variants(*this, c_, {}, [&](variant& v, auto get_pool, auto, auto) {
      v.work = hashes;
      v.run = [this, get_pool, tasks] {
        std::vector<digest> digests;
        double const seconds = timed([&] {
          std::vector<std::tuple<long, long>> args;
          for (long j = 0; j < chains_; ++j) args.emplace_back(j, rounds_);
          digests = get_pool().starmap(md5_task, args, 1);
        });
        return run_result{seconds, joined(digests), tasks};
      };
    });
    auto each_chain = [this](auto&& run_chains) {
      std::vector<digest> digests(static_cast<std::size_t>(chains_));
      double const seconds = timed([&] { run_chains(digests); });
      return run_result{seconds, joined(digests), static_cast<std::size_t>(chains_)};
    };
    add_baseline(*this, c_, "plain loop", false, hashes, [this, each_chain](int) {
      return std::function<run_result()>([this, each_chain] {
        return each_chain([&](std::vector<digest>& d) {
          for (long j = 0; j < chains_; ++j) d[static_cast<std::size_t>(j)] = md5_task(j, rounds_);
        });
      });
    });
    add_baseline(*this, c_, "raw std::thread", true, hashes, [this, each_chain](int n) {
      return std::function<run_result()>([this, each_chain, n] {
        return each_chain([&](std::vector<digest>& d) {
          std::vector<std::thread> threads;
          for (int t = 0; t < n; ++t)
            threads.emplace_back([&, t] {
              for (long j = t; j < chains_; j += n) d[static_cast<std::size_t>(j)] = md5_task(j, rounds_);
            });
          for (auto& thread : threads) thread.join();
        });
      });
    });
    add_baseline(*this, c_, "raw TBB", true, hashes, [this, each_chain](int n) {
      return std::function<run_result()>([this, each_chain, n] {
        return each_chain([&](std::vector<digest>& d) {
          c_.arena(n).execute([&] {
            tbb::parallel_for(0L, chains_, [&](long j) { d[static_cast<std::size_t>(j)] = md5_task(j, rounds_); });
          });
        });
      });
    });
    add_baseline(*this, c_, "OpenMP", true, hashes, [this, each_chain](int n) {
      return std::function<run_result()>([this, each_chain, n] {
        return each_chain([&](std::vector<digest>& d) {
#pragma omp parallel for num_threads(n) schedule(dynamic, 1)
          for (long j = 0; j < chains_; ++j) d[static_cast<std::size_t>(j)] = md5_task(j, rounds_);
        });
      });
    });
    add_joblib_variants(*this, c_, {}, [&](int, auto, auto) {
      return joblib_request{.size = {{"chains", chains_}, {"rounds", rounds_}}, .chunk = 1, .work = hashes};
    });
  }

  bench_context& c_;
  long chains_, rounds_;
};

// -------------------------------------------------------- dispatch and wait

// Tiny tasks: what handing out one task costs. Row counts differ where a
// full run would take minutes (batch_size = 1 through a pipe or joblib).
class tiny_workload : public workload {
 public:
  explicit tiny_workload(bench_context& c) : c_(c), tasks_(c.settings().sizes.tiny_tasks) {
    name = "tiny";
    title = "tiny tasks int f(int) (dispatch cost)";
    unit = "Mtasks/s";
    unit_scale = 1e6;
    per_task = true;
    size_text = fmt::format("{} calls of an opaque int f(int)", tasks_);
    reference = expected_for(tasks_);
    define_variants();
  }

  // Rows with fewer tasks: the sum of their own results.
  [[nodiscard]] std::string expected(variant const& v) const override {
    return expected_for(static_cast<long>(v.work));
  }

  [[nodiscard]] static std::string expected_for(long count) {
    long s = 0;
    for (long i = 0; i < count; ++i) s += static_cast<long>(i ^ 0x5a);
    return std::to_string(s);
  }

 private:
  static std::string total(std::vector<int> const& results) {
    long s = 0;
    for (int r : results) s += r;
    return std::to_string(s);
  }

  // Fewer tasks where each batch is a round trip through a pipe (a pool,
  // ~30 us) or through joblib (~100 us): `round_trips` batches at most, and
  // never more than `cap` tasks.
  long count_for(std::optional<std::size_t> batch, long round_trips, long cap) const {
    long const by_batches = batch ? static_cast<long>(*batch) * round_trips : cap;
    return std::max(1L, std::min({tasks_, cap, by_batches}));
  }

  // Every row sums its results inside the timed part, as joblib_bench.py
  // does: a caller needs them assembled.
  void define_variants() {
    // Both forms of a call: joblib's delayed calls, and map over the range.
    for (bool const as_map : {false, true})
      add_xjob_variants(*this, c_, {.batches = true}, [&](variant& v, auto par, auto, auto) {
        v.work = static_cast<double>(tasks_);
        if (as_map) v.backend += ", map";
        v.run = [this, par, as_map] {
          std::vector<int> results;
          std::string sum;
          double const seconds = timed([&] {
            auto const items = std::views::iota(0, static_cast<int>(tasks_));
            results = as_map ? par->map(tiny, items)
                             : (*par)(items | std::views::transform([](int i) { return xjob::delayed(tiny)(i); }));
            sum = total(results);
          });
          return run_result{seconds, sum, results.size()};
        };
      });
    add_pool_variants(*this, c_, {.batches = true}, [&](variant& v, auto get_pool, auto, auto batch) {
      long const count = count_for(batch, 4000, tasks_);
      v.work = static_cast<double>(count);
      v.run = [get_pool, batch, count] {
        std::vector<int> results;
        std::string sum;
        double const seconds = timed([&] {
          results = get_pool().map(tiny, std::views::iota(0, static_cast<int>(count)), batch.value_or(0));
          sum = total(results);
        });
        return run_result{seconds, sum, results.size()};
      };
    });
    add_baseline(*this, c_, "plain loop", false, static_cast<double>(tasks_), [this](int) {
      return std::function<run_result()>([this] {
        std::vector<int> results(static_cast<std::size_t>(tasks_));
        std::string sum;
        double const seconds = timed([&] {
          for (long i = 0; i < tasks_; ++i) results[static_cast<std::size_t>(i)] = tiny(static_cast<int>(i));
          sum = total(results);
        });
        return run_result{seconds, sum, results.size()};
      });
    });
    add_baseline(*this, c_, "raw TBB", true, static_cast<double>(tasks_), [this](int n) {
      return std::function<run_result()>([this, n] {
        std::vector<int> results(static_cast<std::size_t>(tasks_));
        std::string sum;
        double const seconds = timed([&] {
          c_.arena(n).execute([&] {
            tbb::parallel_for(0L, tasks_, [&](long i) { results[static_cast<std::size_t>(i)] = tiny(static_cast<int>(i)); });
          });
          sum = total(results);
        });
        return run_result{seconds, sum, results.size()};
      });
    });
    add_joblib_variants(*this, c_, {.batches = true}, [&](int, auto, auto batch) {
      long const cap = c_.settings().sizes.tiny_joblib_tasks;
      long const count = count_for(batch, std::min(2000L, std::max(1L, cap / 5)), cap);
      return joblib_request{.size = {{"tasks", count}}, .chunk = 0, .work = static_cast<double>(count)};
    });
  }

  bench_context& c_;
  long tasks_;
};

// Seed 5: tasks that sleep (waiting-bound): what matters is how many wait
// at once.
class sleep_workload : public workload {
 public:
  explicit sleep_workload(bench_context& c)
      : c_(c), tasks_(c.settings().sizes.sleep_tasks), ms_(c.settings().sizes.sleep_ms) {
    name = "sleep";
    title = "sleeping tasks (seed 5)";
    unit = "tasks/s";
    unit_scale = 1;
    per_task = true;
    size_text = fmt::format("{} tasks of {} ms", tasks_, ms_);
    reference = std::to_string(tasks_ * (tasks_ - 1) / 2);
    define_variants();
  }

 private:
  static std::string total(std::vector<long> const& results) {
    long s = 0;
    for (long r : results) s += r;
    return std::to_string(s);
  }

  void define_variants() {
    double const work = static_cast<double>(tasks_);
    add_xjob_variants(*this, c_, {}, [&](variant& v, auto par, auto, auto) {
      v.work = work;
      v.run = [this, par] {
        std::vector<long> results;
        double const seconds = timed([&] {
          results = (*par)(std::views::iota(0L, tasks_) |
                           std::views::transform([this](long i) { return xjob::delayed(sleep_task)(i, ms_); }));
        });
        return run_result{seconds, total(results), results.size()};
      };
    });
    add_pool_variants(*this, c_, {}, [&](variant& v, auto get_pool, auto, auto) {
      v.work = work;
      v.run = [this, get_pool] {
        std::vector<long> results;
        double const seconds = timed([&] {
          std::vector<std::tuple<long, long>> args;
          for (long i = 0; i < tasks_; ++i) args.emplace_back(i, ms_);
          results = get_pool().starmap(sleep_task, args, 1);
        });
        return run_result{seconds, total(results), results.size()};
      };
    });
    add_baseline(*this, c_, "raw std::thread", true, work, [this](int n) {
      return std::function<run_result()>([this, n] {
        std::vector<long> results(static_cast<std::size_t>(tasks_));
        double const seconds = timed([&] {
          std::vector<std::thread> threads;
          for (int t = 0; t < n; ++t)
            threads.emplace_back([&, t] {
              for (long i = t; i < tasks_; i += n) results[static_cast<std::size_t>(i)] = sleep_task(i, ms_);
            });
          for (auto& thread : threads) thread.join();
        });
        return run_result{seconds, total(results), results.size()};
      });
    });
    add_joblib_variants(*this, c_, {}, [&](int, auto, auto) {
      return joblib_request{.size = {{"tasks", tasks_}, {"ms", ms_}}, .chunk = 0, .work = work};
    });
  }

  bench_context& c_;
  long tasks_, ms_;
};

// joblib's one-liner in a loop, as users write it: every call makes a new
// parallel object and maps an opaque int f(int) over a few items, so what
// it measures is the cost of a whole call (making the parallel object,
// dispatching, collecting), not of a task. xjob's processes rows run on the
// warm workers that parallel objects of the same n_jobs and start method
// share, as loky's rows run on its reusable executor. No pool rows (a pool
// per call is not a one-liner) and no joblib multiprocessing row: its
// one-liner starts a multiprocessing.Pool per call (fork), which in the
// co-process, whose other requests left threads running, can deadlock.
class calls_workload : public workload {
 public:
  explicit calls_workload(bench_context& c)
      : c_(c), calls_(c.settings().sizes.calls), tasks_(c.settings().sizes.call_tasks) {
    name = "calls";
    title = "a loop of one-liner calls (a new parallel object each)";
    unit = "calls/s";
    unit_scale = 1;
    per_task = true;  // per call
    size_text = fmt::format("{} calls in a loop, each mapping an opaque int f(int) over {} items", calls_, tasks_);
    reference = expected_for(static_cast<double>(calls_));
    define_variants();
  }

  // Rows with fewer calls (joblib's): the sum of their own results.
  [[nodiscard]] std::string expected(variant const& v) const override { return expected_for(v.work); }

 private:
  [[nodiscard]] std::string expected_for(double calls) const {
    long per_call = 0;
    for (long i = 0; i < tasks_; ++i) per_call += static_cast<long>(i ^ 0x5a);
    return std::to_string(per_call * static_cast<long>(calls));
  }

  void define_variants() {
    double const work = static_cast<double>(calls_);
    add_xjob_variants(*this, c_, {}, [&](variant& v, auto par, auto, auto) {
      v.work = work;
      // The row's settings, as the one-liner writes them (options() are
      // resolved: they name a start method even for threads).
      xjob::parallel_options const options{.n_jobs = par->options().n_jobs, .backend = par->options().backend};
      v.run = [this, options] {
        long sum = 0;
        double const seconds = timed([&] {
          for (long call = 0; call < calls_; ++call) {
            std::vector<int> const results =
                xjob::parallel(options).map(tiny, std::views::iota(0, static_cast<int>(tasks_)));
            for (int r : results) sum += r;
          }
        });
        return run_result{seconds, std::to_string(sum), static_cast<std::size_t>(calls_)};
      };
    });
    add_baseline(*this, c_, "plain loop", false, work, [this](int) {
      return std::function<run_result()>([this] {
        long sum = 0;
        double const seconds = timed([&] {
          for (long call = 0; call < calls_; ++call) {
            std::vector<int> results(static_cast<std::size_t>(tasks_));
            for (long i = 0; i < tasks_; ++i) results[static_cast<std::size_t>(i)] = tiny(static_cast<int>(i));
            for (int r : results) sum += r;
          }
        });
        return run_result{seconds, std::to_string(sum), static_cast<std::size_t>(calls_)};
      });
    });
    add_joblib_variants(
        *this, c_, {},
        [&](int, auto, auto) {
          long const calls = std::min(calls_, c_.settings().sizes.joblib_calls);
          return joblib_request{.size = {{"calls", calls}, {"tasks", tasks_}}, .chunk = 0,
                                .work = static_cast<double>(calls)};
        },
        {"multiprocessing"});
  }

  bench_context& c_;
  long calls_, tasks_;
};

}  // namespace

std::vector<std::string> const& workload_names() {
  static std::vector<std::string> const names = {"map",   "cold",  "rowreduce", "sum", "sumsq", "md5",
                                                 "tiny",  "calls", "sleep",     "npy", "resume"};
  return names;
}

std::unique_ptr<workload> make_workload(std::string const& name, bench_context& context) {
  if (name == "map") return std::make_unique<map_workload>(context, map_output::warm);
  if (name == "cold") return std::make_unique<map_workload>(context, map_output::cold);
  if (name == "npy") return std::make_unique<map_workload>(context, map_output::npy);
  if (name == "resume") return std::make_unique<map_workload>(context, map_output::resumable_npy);
  if (name == "rowreduce") return std::make_unique<reduce_workload>(context);
  if (name == "sum") return std::make_unique<sum_workload>(context);
  if (name == "sumsq") return std::make_unique<sumsq_workload>(context);
  if (name == "md5") return std::make_unique<md5_workload>(context);
  if (name == "tiny") return std::make_unique<tiny_workload>(context);
  if (name == "calls") return std::make_unique<calls_workload>(context);
  if (name == "sleep") return std::make_unique<sleep_workload>(context);
  throw std::invalid_argument(fmt::format("unknown workload '{}'", name));
}

}  // namespace xjob::bench

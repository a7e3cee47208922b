#include "report.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/version.h>
#include <openssl/crypto.h>

#include <xjob/cpu_count.hpp>

namespace xjob::bench {

namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

bool is_stream(record const& r) { return r.family == "baseline" && r.backend.starts_with("STREAM"); }

// The row with the highest median throughput among those `keep` accepts.
template <class Keep>
record const* best(std::vector<record> const& records, std::string const& workload, Keep keep) {
  record const* found = nullptr;
  for (auto const& r : records)
    if (r.workload == workload && r.ok() && keep(r) && (found == nullptr || r.throughput.median > found->throughput.median))
      found = &r;
  return found;
}

std::string config_text(record const& r) {
  std::string out = fmt::format("{}, n_jobs={}", r.backend, r.n_jobs);
  if (r.chunk != "-") out += ", chunk=" + r.chunk;
  if (r.batch != "-") out += ", batch=" + r.batch;
  return out;
}

std::string ratio_text(double x) { return std::isfinite(x) && x > 0 ? fmt::format("{:.2f}x", x) : "-"; }

std::string value_text(double v) {
  if (!std::isfinite(v)) return "-";
  if (v >= 1000) return fmt::format("{:.0f}", v);
  if (v >= 10) return fmt::format("{:.1f}", v);
  return fmt::format("{:.3g}", v);
}

std::string ns_text(double ns) {
  if (!std::isfinite(ns)) return "-";
  if (ns >= 1e6) return fmt::format("{:.1f} ms", ns / 1e6);
  if (ns >= 1e3) return fmt::format("{:.2f} us", ns / 1e3);
  return fmt::format("{:.1f} ns", ns);
}

std::string first_line(std::string const& text) {
  std::string const line = text.substr(0, text.find('\n'));
  return line.size() > 160 ? line.substr(0, 157) + "..." : line;
}

// results.json keeps the order in which its members are written (machine,
// settings, then the data), as its readers show them.
using ordered_json = nlohmann::ordered_json;

// Six significant digits, as in the CSV: the timings carry no more, and the
// two files agree. Null where there is no value (a ratio to a missing row).
ordered_json json_number(double v) {
  if (!std::isfinite(v)) return nullptr;
  std::string const text = fmt::format("{:.6g}", v);
  double rounded = v;
  std::from_chars(text.data(), text.data() + text.size(), rounded);
  return rounded;
}

ordered_json json_summary(summary const& s) {
  return {{"median", json_number(s.median)}, {"min", json_number(s.min)}, {"max", json_number(s.max)}};
}

// A chunk or batch size: null where it does not apply ("-"), a number, or a
// text such as "auto" or "32768 (auto)".
ordered_json json_dimension(std::string const& text) {
  if (text == "-") return nullptr;
  std::uint64_t value = 0;
  auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!text.empty() && error == std::errc() && end == text.data() + text.size()) return value;
  return text;
}

ordered_json json_object(std::vector<std::pair<std::string, std::string>> const& pairs) {
  ordered_json out = ordered_json::object();
  for (auto const& [key, value] : pairs) out[key] = value;
  return out;
}

std::string csv_field(std::string const& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c == '\n' || c == '\r' ? ' ' : c;
  }
  return out + "\"";
}

std::string read_first(char const* path, std::string const& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(key)) {
      auto const colon = line.find(':');
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  return "?";
}

}  // namespace

workload_info info_of(workload const& w) {
  return {w.name, w.title, w.unit, w.size_text, w.per_task, w.memory_bound};
}

std::vector<record> records_of(workload const& w) {
  std::vector<record> out;
  for (variant const& v : w.variants) {
    record r{.workload = w.name, .family = v.family, .backend = v.backend, .n_jobs = v.n_jobs, .chunk = v.chunk,
             .batch = v.batch, .reps = static_cast<int>(v.seconds.size()), .seconds = summarize(v.seconds),
             .throughput = {nan, nan, nan}, .ns_per_task = std::nullopt, .tasks = v.tasks, .error = v.error,
             .x_tbb = nan, .x_bandwidth = nan, .x_joblib = nan};
    if (r.ok() && v.seconds.empty()) r.error = "no timed run";
    if (r.ok()) {
      double const scale = v.work / w.unit_scale;
      r.throughput = {scale / r.seconds.median, scale / r.seconds.max, scale / r.seconds.min};
      if (w.per_task && v.tasks > 0) {
        double const per = 1e9 / static_cast<double>(v.tasks);
        r.ns_per_task = summary{r.seconds.median * per, r.seconds.min * per, r.seconds.max * per};
      }
    }
    out.push_back(std::move(r));
  }
  for (record& r : out) {
    if (!r.ok()) continue;
    int const n = r.n_jobs;
    auto at_n = [n](auto keep) { return [n, keep](record const& o) { return o.n_jobs == n && keep(o); }; };
    if (record const* tbb = best(out, w.name, at_n([](record const& o) { return o.family == "baseline" && o.backend == "raw TBB"; })))
      r.x_tbb = r.throughput.median / tbb->throughput.median;
    if (w.memory_bound)
      if (record const* stream = best(out, w.name, at_n(is_stream)))
        r.x_bandwidth = r.throughput.median / stream->throughput.median;
    if (record const* joblib = best(out, w.name, at_n([](record const& o) { return o.family == "joblib"; })))
      r.x_joblib = r.throughput.median / joblib->throughput.median;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> machine_description(std::string const& joblib_versions) {
  utsname u{};
  ::uname(&u);
  long const pages = ::sysconf(_SC_PHYS_PAGES);
  long const page_size = ::sysconf(_SC_PAGE_SIZE);
  cpu_set_t affinity;
  CPU_ZERO(&affinity);
  int const usable = ::sched_getaffinity(0, sizeof affinity, &affinity) == 0 ? CPU_COUNT(&affinity) : 0;
  std::time_t const now = std::time(nullptr);
  char when[64] = {};
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
  std::string macros;
  auto flag = [&macros](bool on, std::string const& name) {
    if (!on) return;
    if (!macros.empty()) macros += ' ';
    macros += name;
  };
#ifdef __OPTIMIZE__
  flag(true, "__OPTIMIZE__");
#endif
#ifdef NDEBUG
  flag(true, "NDEBUG");
#endif
#ifdef __NO_MATH_ERRNO__
  flag(true, "-fno-math-errno");
#endif
#ifdef __FAST_MATH__
  flag(true, "-ffast-math");
#endif
#ifdef XTENSOR_USE_XSIMD
  flag(true, "XTENSOR_USE_XSIMD");
#endif
#ifdef __AVX2__
  flag(true, "__AVX2__");
#endif
#ifdef __AVX512F__
  flag(true, "__AVX512F__");
#endif
#ifdef _OPENMP
  flag(true, fmt::format("_OPENMP={}", _OPENMP));
#endif
#ifndef XJOB_BENCH_COPTS
#define XJOB_BENCH_COPTS "?"
#endif
#ifndef XJOB_BENCH_COMPILATION_MODE
#define XJOB_BENCH_COMPILATION_MODE "?"
#endif
  return {
      {"cpu", read_first("/proc/cpuinfo", "model name")},
      {"cpus", std::to_string(std::thread::hardware_concurrency())},
      {"cpus_usable", std::to_string(usable)},
      {"memory_gib", fmt::format("{:.1f}", static_cast<double>(pages) * static_cast<double>(page_size) / double(1 << 30))},
      {"kernel", fmt::format("{} {} {}", u.sysname, u.release, u.machine)},
      {"compiler", "GCC " __VERSION__},
      {"compilation_mode", XJOB_BENCH_COMPILATION_MODE},
      {"flags", fmt::format("{} [{}]", XJOB_BENCH_COPTS, macros)},
      {"onetbb", TBB_VERSION_STRING},
      {"openssl", OpenSSL_version(OPENSSL_VERSION)},
      {"joblib", joblib_versions.empty() ? "not run" : joblib_versions},
      {"date", when},
  };
}

void print_workload_table(workload_info const& info, std::vector<record> const& records) {
  fmt::print("\n== {}: {} ==\n", info.name, info.title);
  fmt::print("size: {}. Throughput in {} (higher is better): median [min-max] over the timed repetitions.\n",
             info.size_text, info.unit);
  fmt::print("x TBB, x BW, x joblib: this row's median over raw oneTBB's, the STREAM-like bandwidth's and the best\n"
             "joblib backend's, at the same n_jobs.\n");
  fmt::print("{:<9} {:<26} {:>6} {:>14} {:>7} {:>9} {:>20} {:>10} {:>7} {:>7} {:>9}\n", "family", "backend", "n_jobs",
             "chunk", "batch", info.unit, "[min-max]", info.per_task ? "per task" : "", "x TBB", "x BW", "x joblib");
  for (record const& r : records) {
    if (!r.ok()) {
      fmt::print("{:<9} {:<26} {:>6} {:>14} {:>7} FAILED: {}\n", r.family, r.backend, r.n_jobs, r.chunk, r.batch,
                 first_line(r.error));
      continue;
    }
    fmt::print("{:<9} {:<26} {:>6} {:>14} {:>7} {:>9} {:>20} {:>10} {:>7} {:>7} {:>9}\n", r.family, r.backend,
               r.n_jobs, r.chunk, r.batch, value_text(r.throughput.median),
               fmt::format("[{}-{}]", value_text(r.throughput.min), value_text(r.throughput.max)),
               r.ns_per_task ? ns_text(r.ns_per_task->median) : "", ratio_text(r.x_tbb), ratio_text(r.x_bandwidth),
               ratio_text(r.x_joblib));
  }
  std::fflush(stdout);
}

void print_summary(std::vector<workload_info> const& infos, std::vector<record> const& records) {
  fmt::print("\n== Summary: the best xjob configuration per workload ==\n");
  fmt::print("Ratios of medians from this run: to the best raw oneTBB row, to the best STREAM-like bandwidth row\n"
             "(memory-bound workloads), and to the best joblib row (any backend) and the best joblib loky row.\n");
  fmt::print("{:<10} {:<52} {:>12} {:>8} {:>8} {:>9} {:>9}\n", "workload", "best xjob configuration", "throughput",
             "x TBB", "x BW", "x joblib", "x loky");
  auto is_xjob = [](record const& r) { return r.family == "xjob"; };
  for (auto const& info : infos) {
    record const* x = best(records, info.name, is_xjob);
    if (x == nullptr) continue;
    auto ratio_to = [&](auto keep) {
      record const* o = best(records, info.name, keep);
      return o == nullptr ? nan : x->throughput.median / o->throughput.median;
    };
    double const tbb = ratio_to([](record const& r) { return r.family == "baseline" && r.backend == "raw TBB"; });
    double const bw = info.memory_bound ? ratio_to(is_stream) : nan;
    double const joblib = ratio_to([](record const& r) { return r.family == "joblib"; });
    double const loky = ratio_to([](record const& r) { return r.backend == "joblib loky"; });
    fmt::print("{:<10} {:<52} {:>12} {:>8} {:>8} {:>9} {:>9}\n", info.name, config_text(*x),
               fmt::format("{} {}", value_text(x->throughput.median), info.unit), ratio_text(tbb), ratio_text(bw),
               ratio_text(joblib), ratio_text(loky));
  }

  fmt::print("\n== Targets (medians of this run; reported, never enforced) ==\n");
  auto verdict = [](double value, double need) {
    return !std::isfinite(value) ? "n/a   " : value >= need ? "MET   " : "MISSED";
  };
  auto has = [&](std::string const& name) {
    return std::ranges::any_of(infos, [&](auto const& i) { return i.name == name; });
  };
  auto n_jobs_of = [&](std::string const& workload) {
    std::set<int> values;
    for (auto const& r : records)
      if (r.workload == workload) values.insert(r.n_jobs);
    return values;
  };
  if (has("map")) {
    record const* x = best(records, "map", is_xjob);
    record const* loky = best(records, "map", [](record const& r) { return r.backend == "joblib loky"; });
    record const* tbb = best(records, "map", [](record const& r) { return r.backend == "raw TBB" && r.family == "baseline"; });
    double const vs_loky = x && loky ? x->throughput.median / loky->throughput.median : nan;
    double const vs_tbb = x && tbb ? x->throughput.median / tbb->throughput.median : nan;
    fmt::print("  [{}] map: best xjob >= 5x best joblib loky (memmapped): {}\n", verdict(vs_loky, 5), ratio_text(vs_loky));
    fmt::print("  [{}] map: best xjob >= 0.95x best raw TBB: {}\n", verdict(vs_tbb, 0.95), ratio_text(vs_tbb));
    // Against the streaming-store ceiling, and processes against threads,
    // at each n_jobs both ran with (best chunk size of each).
    for (int const n : n_jobs_of("map")) {
      auto best_of = [&](std::string const& family, std::string const& backend) {
        return best(records, "map", [&](record const& r) { return r.family == family && r.backend == backend && r.n_jobs == n; });
      };
      record const* threads = best_of("xjob", "threads");
      record const* streaming = best_of("baseline", "raw TBB streaming");
      record const* processes = best_of("xjob", "processes");
      if (threads && streaming)
        fmt::print("  [{}] map: xjob threads >= 0.95x raw TBB with streaming stores at n_jobs={}: {}\n",
                   verdict(threads->throughput.median / streaming->throughput.median, 0.95), n,
                   ratio_text(threads->throughput.median / streaming->throughput.median));
      if (threads && processes)
        fmt::print("  [{}] map: xjob processes >= 0.9x xjob threads at n_jobs={}: {}\n",
                   verdict(processes->throughput.median / threads->throughput.median, 0.9), n,
                   ratio_text(processes->throughput.median / threads->throughput.median));
    }
  }
  if (has("cold")) {
    for (int const n : n_jobs_of("cold")) {
      record const* malloc_row = best(records, "cold", [&](record const& r) {
        return r.backend == "raw TBB, fresh malloc" && r.n_jobs == n;
      });
      for (std::string const backend : {"threads", "processes"}) {
        record const* x = best(records, "cold", [&](record const& r) {
          return r.family == "xjob" && r.backend == backend && r.n_jobs == n;
        });
        if (x == nullptr || malloc_row == nullptr) continue;
        double const ratio = x->throughput.median / malloc_row->throughput.median;
        fmt::print("  [{}] cold output: xjob {} into a new shared_array >= raw TBB into fresh malloc memory at "
                   "n_jobs={}: {}\n",
                   verdict(ratio, 1.0), backend, n, ratio_text(ratio));
      }
    }
  }
  if (has("tiny")) {
    // Parallel dispatch only: one worker runs in the caller, with nothing handed out.
    for (std::string const batch : {"auto", "1"}) {
      auto per_task = [&](auto keep) {
        double lowest = nan;
        for (auto const& r : records)
          if (r.workload == "tiny" && r.ok() && r.n_jobs > 1 && r.batch == batch && r.ns_per_task && keep(r) &&
              !(r.ns_per_task->median >= lowest))
            lowest = r.ns_per_task->median;
        return lowest;
      };
      double const xjob_ns = per_task([](record const& r) { return r.family == "xjob"; });
      double const loky_ns = per_task([](record const& r) { return r.backend == "joblib loky"; });
      double const need = batch == "auto" ? 3 : 10;
      fmt::print("  [{}] tiny tasks, batch={}: xjob's cheapest parallel dispatch ({}) >= {}x cheaper than joblib loky's ({}): {}\n",
                 verdict(loky_ns / xjob_ns, need), batch, ns_text(xjob_ns), need, ns_text(loky_ns),
                 ratio_text(loky_ns / xjob_ns));
    }
    // Against raw oneTBB's parallel_for over the same tasks, at the largest
    // n_jobs both ran with, both forms of the call, automatic batches.
    int n = 0;
    for (auto const& r : records)
      if (r.workload == "tiny" && r.backend == "raw TBB" && r.ok() && r.n_jobs <= xjob::cpu_count()) n = std::max(n, r.n_jobs);
    record const* tbb = best(records, "tiny", [n](record const& r) { return r.backend == "raw TBB" && r.n_jobs == n; });
    for (std::string const backend : {"threads", "threads, map"}) {
      record const* x = best(records, "tiny", [&](record const& r) {
        return r.family == "xjob" && r.backend == backend && r.n_jobs == n && r.batch == "auto";
      });
      if (x == nullptr || tbb == nullptr) continue;
      double const ratio = x->throughput.median / tbb->throughput.median;
      fmt::print("  [{}] tiny tasks, xjob {} with automatic batches >= 0.5x raw TBB at n_jobs={} ({} vs {}): {}\n",
                 verdict(ratio, 0.5), backend == "threads" ? "threads (delayed calls)" : "threads (map)", n,
                 x->ns_per_task ? ns_text(x->ns_per_task->median) : "-",
                 tbb->ns_per_task ? ns_text(tbb->ns_per_task->median) : "-", ratio_text(ratio));
    }
  }
  if (has("sum")) {
    record const* x = best(records, "sum", is_xjob);
    record const* raw = best(records, "sum", [](record const& r) { return r.family == "baseline"; });
    double const ratio = x && raw ? x->throughput.median / raw->throughput.median : nan;
    fmt::print("  [{}] sum: best xjob reduce_chunks >= 0.95x the best raw row ({}): {}\n", verdict(ratio, 0.95),
               raw ? raw->backend : std::string("none"), ratio_text(ratio));
  }
  if (has("resume")) {
    // Journaling's cost: the threads backend into a resumable output
    // against the same call into a plain .npy file, at the same n_jobs.
    record const* x = best(records, "resume", [](record const& r) { return r.family == "xjob" && r.backend == "threads"; });
    for (std::string const baseline : {"xjob into create_npy", "xjob into create_npy, msync"}) {
      record const* plain = x == nullptr ? nullptr : best(records, "resume", [&](record const& r) {
        return r.family == "baseline" && r.backend == baseline && r.n_jobs == x->n_jobs;
      });
      double const ratio = x && plain ? x->throughput.median / plain->throughput.median : nan;
      fmt::print("  [{}] resume: xjob threads into a resumable output >= 0.95x {} (journaling <= 5%): {}\n",
                 verdict(ratio, 0.95), baseline, ratio_text(ratio));
    }
  }
  int const cpus = xjob::cpu_count();
  for (std::string const name : {"sumsq", "md5"}) {
    if (!has(name)) continue;
    int n = 0;
    for (auto const& r : records)
      if (r.workload == name && r.n_jobs <= cpus) n = std::max(n, r.n_jobs);
    record const* raw = best(records, name, [n](record const& r) { return r.backend == "raw std::thread" && r.n_jobs == n; });
    for (std::string const backend : {"threads", "processes", "pool (forkserver)"}) {
      record const* x = best(records, name, [&](record const& r) { return r.backend == backend && r.n_jobs == n; });
      if (x == nullptr || raw == nullptr) continue;
      double const ratio = x->throughput.median / raw->throughput.median;
      fmt::print("  [{}] {}: xjob {} within 3% of raw std::thread at n_jobs={}: {:.3f}x\n", verdict(ratio, 0.97), name,
                 backend, n, ratio);
    }
  }
  std::fflush(stdout);
}

void write_csv(std::filesystem::path const& path, std::vector<workload_info> const& infos,
               std::vector<record> const& records) {
  std::ofstream out(path);
  out << "workload,unit,family,backend,n_jobs,chunk,batch,reps,tasks,seconds_median,seconds_min,seconds_max,"
         "throughput_median,throughput_min,throughput_max,ns_per_task_median,ns_per_task_min,ns_per_task_max,"
         "x_raw_tbb,x_bandwidth,x_joblib,ok,error\n";
  auto number = [](double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); };
  for (record const& r : records) {
    auto const info = std::ranges::find(infos, r.workload, &workload_info::name);
    out << fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", r.workload,
                       csv_field(info == infos.end() ? "" : info->unit), r.family, csv_field(r.backend), r.n_jobs,
                       csv_field(r.chunk), r.batch, r.reps, r.tasks, number(r.seconds.median), number(r.seconds.min),
                       number(r.seconds.max), number(r.throughput.median), number(r.throughput.min),
                       number(r.throughput.max), r.ns_per_task ? number(r.ns_per_task->median) : "",
                       r.ns_per_task ? number(r.ns_per_task->min) : "", r.ns_per_task ? number(r.ns_per_task->max) : "",
                       number(r.x_tbb), number(r.x_bandwidth), number(r.x_joblib), r.ok() ? "true" : "false",
                       csv_field(r.error));
  }
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

void write_json(std::filesystem::path const& path, std::string const& preset,
                std::vector<std::pair<std::string, std::string>> const& machine,
                std::vector<std::pair<std::string, std::string>> const& settings,
                std::vector<workload_info> const& infos, std::vector<record> const& records) {
  ordered_json workloads = ordered_json::array();
  for (workload_info const& w : infos)
    workloads.push_back({{"name", w.name},
                         {"title", w.title},
                         {"unit", w.unit},
                         {"size", w.size_text},
                         {"per_task", w.per_task},
                         {"memory_bound", w.memory_bound}});
  ordered_json rows = ordered_json::array();
  for (record const& r : records)
    rows.push_back({{"workload", r.workload},
                    {"family", r.family},
                    {"backend", r.backend},
                    {"n_jobs", r.n_jobs},
                    {"chunk_size", json_dimension(r.chunk)},
                    {"batch_size", json_dimension(r.batch)},
                    {"reps", r.reps},
                    {"tasks", r.tasks},
                    {"seconds", json_summary(r.seconds)},
                    {"throughput", json_summary(r.throughput)},
                    {"ns_per_task", r.ns_per_task ? json_summary(*r.ns_per_task) : ordered_json()},
                    {"x_raw_tbb", json_number(r.x_tbb)},
                    {"x_bandwidth", json_number(r.x_bandwidth)},
                    {"x_joblib", json_number(r.x_joblib)},
                    {"ok", r.ok()},
                    {"error", r.ok() ? ordered_json() : ordered_json(r.error)}});
  ordered_json const results = {{"tool", "xjob-bench"},
                                {"preset", preset},
                                {"machine", json_object(machine)},
                                {"settings", json_object(settings)},
                                {"workloads", std::move(workloads)},
                                {"rows", std::move(rows)}};
  // Non-ASCII escaped, so that a reader decodes it right whatever encoding
  // it assumes (Python's open() takes the locale's); bytes that are not
  // UTF-8 (an exception's message may hold any) become U+FFFD instead of
  // losing the whole file.
  std::string const text =
      results.dump(1, ' ', /*ensure_ascii=*/true, ordered_json::error_handler_t::replace) + '\n';
  std::ofstream file(path);
  file << text;
  if (!file) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

}  // namespace xjob::bench

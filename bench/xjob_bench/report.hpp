// What xjob-bench prints and writes: the per-workload tables, the summary of
// the best configuration per workload with its ratios and the targets, the
// CSV and JSON files, and the machine's description.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../bench_support.hpp"
#include "sweep.hpp"

namespace xjob::bench {

// A workload's description, kept after its data is freed.
struct workload_info {
  std::string name, title, unit, size_text;
  bool per_task = false;
  bool memory_bound = false;
};

// One variant's measurements.
struct record {
  std::string workload;
  std::string family, backend;
  int n_jobs = 1;
  std::string chunk, batch;
  int reps = 0;
  summary seconds;
  summary throughput;                  // in the workload's unit; min from the slowest run
  std::optional<summary> ns_per_task;  // for per-task workloads
  std::size_t tasks = 0;
  std::string error;  // not empty: failed
  // Ratios of the median throughput, at the same n_jobs (NaN where absent).
  double x_tbb = 0, x_bandwidth = 0, x_joblib = 0;

  [[nodiscard]] bool ok() const { return error.empty(); }
};

// The records of a finished workload, with their ratios filled in.
std::vector<record> records_of(workload const& w);
workload_info info_of(workload const& w);

// The machine and build, as "key: value" pairs in a stable order.
std::vector<std::pair<std::string, std::string>> machine_description(std::string const& joblib_versions);

void print_workload_table(workload_info const& info, std::vector<record> const& records);

// The best xjob row per workload against raw TBB, bandwidth and joblib, and
// the project's targets; returned as text lines for the README as well.
void print_summary(std::vector<workload_info> const& infos, std::vector<record> const& records);

void write_csv(std::filesystem::path const& path, std::vector<workload_info> const& infos,
               std::vector<record> const& records);
void write_json(std::filesystem::path const& path, std::string const& preset,
                std::vector<std::pair<std::string, std::string>> const& machine,
                std::vector<std::pair<std::string, std::string>> const& settings,
                std::vector<workload_info> const& infos, std::vector<record> const& records);

}  // namespace xjob::bench

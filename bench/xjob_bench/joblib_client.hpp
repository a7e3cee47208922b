// joblib_client: the same workloads through Python's joblib, for the ratios.
// Runs bench/joblib_bench.py as a co-process over pipes (one JSON object per
// line each way), so joblib's runs interleave with xjob's in one sweep and
// joblib's worker pools stay warm between requests, as in a user's loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

// Only the declarations: the files that include this one through sweep.hpp
// but build no request (main.cc, report.cc) do not parse all of nlohmann-json.
#include <nlohmann/json_fwd.hpp>

namespace xjob::bench {

class joblib_client {
 public:
  struct reply {
    std::optional<double> seconds;  // empty if the run failed
    std::string result;             // the workload's checksum, as text
    std::size_t tasks = 0;          // tasks joblib dispatched
    std::string error;              // empty on success
  };

  // Starts `python script`, whose memmapped arrays go into `data_dir`. If
  // that fails, or joblib/numpy cannot be imported, available() is false
  // and unavailable_reason() says why.
  joblib_client(std::string const& python, std::string const& script, std::string data_dir);
  ~joblib_client();
  joblib_client(joblib_client const&) = delete;
  joblib_client& operator=(joblib_client const&) = delete;

  [[nodiscard]] bool available() const noexcept { return pid_ > 0; }
  [[nodiscard]] std::string const& unavailable_reason() const noexcept { return reason_; }
  // "python 3.11.2, joblib 1.2.0, numpy 1.24.2"
  [[nodiscard]] std::string const& versions() const noexcept { return versions_; }

  // Sends one request (a JSON object without "id", which this adds) and
  // waits up to `timeout` for its reply. A co-process that dies or stops
  // answering is killed, and this and later requests fail. Throws
  // std::runtime_error naming the line if the reply is not the protocol's.
  reply run(nlohmann::json const& request, std::chrono::seconds timeout);

 private:
  std::optional<std::string> read_line(std::chrono::steady_clock::time_point deadline);
  void stop(std::string const& why) noexcept;
  void remove_leftovers(pid_t python_pid) const noexcept;

  pid_t pid_ = -1;
  pid_t group_ = -1;  // its process group, joblib's workers included
  int to_child_ = -1;
  int from_child_ = -1;
  std::string data_dir_;
  std::string buffered_;
  std::string reason_;
  std::string versions_;
  long next_id_ = 1;
};

}  // namespace xjob::bench

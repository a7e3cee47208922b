#include <xjob/cpu_count.hpp>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <fstream>
#include <string>
#include <thread>

namespace xjob {

namespace {
// cgroup v2 quota: "max 100000" (none) or "150000 100000" (1.5 CPUs).
int cgroup_cpu_limit() {
  std::ifstream file("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (!(file >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    long long const q = std::stoll(quota);
    return static_cast<int>(std::max(1LL, q / period));
  } catch (...) {
    return 0;
  }
}
// Set in a worker process: its share of the caller's CPUs.
std::atomic<int> worker_share{0};
}  // namespace

namespace detail {
void limit_cpu_count_to_worker_share(int cpus) noexcept { worker_share.store(cpus, std::memory_order_relaxed); }
}  // namespace detail

std::size_t last_level_cache_bytes() noexcept {
  static std::size_t const bytes = [] {
    std::size_t largest = 0;
    // index0..: L1d, L1i, L2, L3 as the kernel lists them; sizes like "48K".
    for (int index = 0; index < 8; ++index) {
      std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
      std::size_t value = 0;
      char unit = '\0';
      if (!(file >> value)) continue;
      file >> unit;
      if (unit == 'K') value <<= 10;
      if (unit == 'M') value <<= 20;
      if (unit == 'G') value <<= 30;
      largest = std::max(largest, value);
    }
    return largest > 0 ? largest : std::size_t{32} << 20;
  }();
  return bytes;
}

int cpu_count() noexcept {
  int count = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
  if (count <= 0) count = static_cast<int>(std::thread::hardware_concurrency());
  if (int const limit = cgroup_cpu_limit(); limit > 0) count = std::min(count, limit);
  if (int const share = worker_share.load(std::memory_order_relaxed); share > 0) count = std::min(count, share);
  return std::max(count, 1);
}

}  // namespace xjob

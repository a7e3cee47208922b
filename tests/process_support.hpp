// Helpers for tests of worker processes: the children, descriptors and
// /dev/shm entries a call must leave as it found them, real crashes, and
// forked children with a flag to meet on.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/process_workers.hpp>
#include <xjob/shared_array.hpp>

namespace xjob::testing {

// Child processes of this process, from /proc (zombies included).
inline std::vector<pid_t> child_processes() {
  std::vector<pid_t> children;
  for (auto const& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream file(task.path() / "children");
    pid_t pid = 0;
    while (file >> pid) children.push_back(pid);
  }
  return children;
}

inline std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  for (auto const& entry : std::filesystem::directory_iterator("/dev/shm")) names.insert(entry.path().string());
  return names;
}

// Whether `pid` has ended (gone, or a zombie waiting for its new parent).
inline bool process_ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return true;
  auto const paren = text.rfind(')');
  return paren == std::string::npos || text.substr(paren + 2, 1) == "Z";
}

// A crash of the kind named, for real.
[[noreturn]] inline void crash(std::string const& how) {
  if (how == "SIGSEGV") {
    // A store into a page without access: a real fault (a store through
    // nullptr would be caught by UBSan's null check before it happens).
    void* const page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *static_cast<int volatile*>(page) = 1;
  } else if (how == "SIGKILL") {
    raise(SIGKILL);
  } else if (how == "abort") {
    std::abort();
  } else if (how == "_exit(3)") {
    _exit(3);
  } else if (how == "exit(0) in a task") {
    std::exit(0);
  }
  _exit(99);
}

// What xjob keeps on purpose between calls, given back: the warm worker
// processes of the processes backend (with their channels and pidfds) and
// the cache of shared memory (each mapping with its memfd).
inline bool release_kept_resources() {
  xjob::release_process_workers();
  xjob::trim_shared_memory_cache();
  return true;
}

// The whole state a call must leave behind unchanged, once what xjob keeps
// on purpose is given back.
struct process_resources {
  bool released = release_kept_resources();
  std::size_t descriptors = open_descriptor_count();
  std::vector<pid_t> children = child_processes();
  std::set<std::string> shm = dev_shm_entries();
};

inline void require_nothing_left(process_resources const& before) {
  release_kept_resources();
  REQUIRE(open_descriptor_count() == before.descriptors);
  REQUIRE(child_processes() == before.children);
  REQUIRE(dev_shm_entries() == before.shm);
}

// A forked child running `body` (its exit code is what body returns, 99 if
// it throws), killed and reaped on destruction if wait() was not called.
class child_process {
 public:
  template <class Body>
  explicit child_process(Body body) {
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      int code = 98;
      try {
        code = body();
      } catch (...) {
        code = 99;
      }
      _exit(code);
    }
    if (pid_ < 0) FAIL("fork failed");
  }
  ~child_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  child_process(child_process const&) = delete;
  child_process& operator=(child_process const&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }
  void kill(int signal) const { ::kill(pid_, signal); }
  // Its exit code, or 128 + the signal that killed it.
  int wait() {
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

// An int in shared memory that processes set and wait for.
class shared_flag {
 public:
  shared_flag() : memory_(64) {}
  void set(int value) { flag().store(value, std::memory_order_release); }
  // Whether it reached `value` within 3 s.
  [[nodiscard]] bool wait_for(int value) {
    auto const until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (flag().load(std::memory_order_acquire) != value) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }

 private:
  std::atomic_ref<int> flag() { return std::atomic_ref<int>(*reinterpret_cast<int*>(memory_.data())); }
  xjob::ipc::shared_memory memory_;
};

}  // namespace xjob::testing

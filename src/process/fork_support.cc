#include "fork_support.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

#include <oneapi/tbb/global_control.h>

#include <xjob/detail/fork_shared.hpp>

namespace xjob::detail {
void limit_cpu_count_to_worker_share(int cpus) noexcept;
}  // namespace xjob::detail

namespace xjob::detail::process {

namespace {

// Reads a /proc/.../stat file into `text` and returns where its third
// field (the state letter) starts, or nullptr. "pid (name) S ...": the name
// may hold spaces and parentheses, so fields count from the last ')'.
template <std::size_t N>
char const* stat_fields_from_state(char const* path, char (&text)[N]) noexcept {
  int const fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  ssize_t const length = read(fd, text, N - 1);
  close(fd);
  if (length <= 0) return nullptr;
  text[length] = '\0';
  char const* close_paren = std::strrchr(text, ')');
  return close_paren != nullptr && close_paren[1] == ' ' ? close_paren + 2 : nullptr;
}

// The state letter of thread `tid` of this process ('R' running, 'S'
// sleeping, ...), or 0 if it is gone.
char thread_state(char const* tid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
  char text[512];
  char const* state = stat_fields_from_state(path, text);
  return state != nullptr ? *state : 0;
}

bool other_threads_running() noexcept {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  long const self = syscall(SYS_gettid);
  bool running = false;
  while (dirent const* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.' || std::strtol(entry->d_name, nullptr, 10) == self) continue;
    if (thread_state(entry->d_name) == 'R') {
      running = true;
      break;
    }
  }
  closedir(tasks);
  return running;
}


// The worker's cap on oneTBB, in static storage: it lives as long as the
// worker (which leaves through _exit), and neither a function-local static
// (its guard lock may have been held by another thread of the caller at the
// fork) nor a heap object (a leak checker's complaint at exit).
alignas(tbb::global_control) unsigned char worker_tbb_cap[sizeof(tbb::global_control)];

// The kernel's sigaction, set with the raw system call: sanitizers intercept
// signal() and keep their own handlers for crash signals.
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  unsigned long mask;
};

void restore_default_action(int signal_number) noexcept {
  kernel_sigaction const action{SIG_DFL, 0, nullptr, 0};
  syscall(SYS_rt_sigaction, signal_number, &action, nullptr, sizeof action.mask);
}

template <class Function>
Function* find_symbol(char const* name) noexcept {
  void* const found = dlsym(RTLD_DEFAULT, name);
  // A failed lookup leaves an error record in this thread's memory until
  // the second dlerror(): in a child forked from another thread it would be
  // memory no thread holds (a leak to LeakSanitizer at the child's exit).
  if (found == nullptr) {
    (void)dlerror();
    (void)dlerror();
  }
  return reinterpret_cast<Function*>(found);
}

}  // namespace

bool single_threaded() noexcept {
  // num_threads, field 20 of /proc/self/stat: cheaper than listing the tasks.
  char text[1024];
  char const* field = stat_fields_from_state("/proc/self/stat", text);
  for (int index = 3; field != nullptr && index < 20; ++index) {
    field = std::strchr(field, ' ');
    if (field != nullptr) ++field;
  }
  return field != nullptr && std::strtol(field, nullptr, 10) == 1;
}

void prepare_to_fork() noexcept {
  constexpr std::chrono::microseconds patience(10'000);
  if (!single_threaded()) {
    // oneTBB's idle threads spin for a while after a parallel loop, taking
    // its locks, then sleep. Two quiet looks in a row mean they sleep.
    auto const deadline = std::chrono::steady_clock::now() + patience;
    int quiet = 0;
    while (quiet < 2 && std::chrono::steady_clock::now() < deadline) {
      if (other_threads_running()) {
        quiet = 0;
        std::this_thread::yield();
      } else {
        ++quiet;
      }
    }
  }
  // GNU OpenMP has no fork handler: a child finds a pool of threads that do
  // not exist there. Pausing drops the pool. LLVM's OpenMP (which defines
  // kmp_set_defaults) handles fork itself.
  using pause_function = int(int);
  if (auto* pause = find_symbol<pause_function>("omp_pause_resource_all");
      pause != nullptr && find_symbol<void(char const*)>("kmp_set_defaults") == nullptr)
    pause(2 /* omp_pause_hard */);
  std::fflush(nullptr);
}

bool become_worker(pid_t caller, int cpu_share) noexcept {
  // No orphans: the worker dies when the thread that forked it does.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != caller) return false;
  // A crash ends the worker as what it is, for the caller to report: the
  // caller's crash handlers (a test framework's, a crash reporter's) would
  // run in the worker and make it look like something else.
  // SIGTERM (xjob::process::terminate, a kill from outside) must end it
  // too, not run the caller's graceful-shutdown handler in it.
  for (int signal_number : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS, SIGTERM})
    restore_default_action(signal_number);
  limit_cpu_count_to_worker_share(cpu_share);
  mark_as_worker_process();
  std::string const threads = std::to_string(cpu_share);
  for (char const* variable : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"})
    setenv(variable, threads.c_str(), 1);
  if (auto* set_threads = find_symbol<void(int)>("omp_set_num_threads"); set_threads != nullptr)
    set_threads(cpu_share);
  try {
    new (worker_tbb_cap)
        tbb::global_control(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(cpu_share));
  } catch (...) {
    // Out of memory at start: the worker runs uncapped rather than not at all.
  }
  return true;
}

}  // namespace xjob::detail::process

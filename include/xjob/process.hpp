// xjob::process: one function run in a child process, like Python's
// multiprocessing.Process: start(), join(), join_for(), is_alive(),
// exit_code(), terminate(), kill().
//
// Start methods (see xjob/start_method.hpp): with fork (the default) the
// child is a copy of the caller at start(), so any callable works, closures
// over the caller's state included. With forkserver or spawn the child did
// not see the caller's memory: the function must be a plain function or a
// captureless lambda, and its arguments are copied there, so they must be
// transferable (xjob/transfer.hpp); anything else is a compile-time error.
// forkserver and spawn need xjob::init(argc, argv) at the top of main.
//
// Daemon-like, always: a child dies with its parent (SIGKILL when the thread
// that started it ends, for fork and spawn; when the thread that ran
// xjob::init ends, for forkserver), and destroying a started process that was not
// joined kills it (SIGKILL) and reaps it, so no path leaves a zombie.
#pragma once

#include <xjob/detail/config.hpp>

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/start_method.hpp>
#include <xjob/transfer.hpp>

namespace xjob {

namespace detail {

// What a child started by fork runs: the callable and its arguments.
class process_target {
 public:
  virtual ~process_target() = default;
  virtual void run() = 0;
};

template <class F, class... Args>
class process_target_of final : public process_target {
 public:
  template <class G, class... A>
  explicit process_target_of(G&& function, A&&... args)
      : function_(std::forward<G>(function)), args_(std::forward<A>(args)...) {}
  void run() override {
    std::apply([this](Args&... args) { (void)std::invoke(function_, args...); }, args_);
  }

 private:
  F function_;
  std::tuple<Args...> args_;
};

}  // namespace detail

// A function run in a child process. Move-only; not thread-safe (use one
// object from one thread at a time; different objects are independent).
//   xjob::process p([&data] { crunch(data); });   // fork: any callable
//   p.start();
//   if (!p.join_for(std::chrono::seconds(5))) p.terminate();
//   p.join();
//   if (p.exit_code() != 0) std::cerr << p.error_message() << "\n";
class process {
 public:
  // An empty process object (start() throws); something to move into.
  process() noexcept = default;

  // `function(args...)` in a child forked at start(). The callable and the
  // arguments are moved or copied into this object. Throws what copying
  // them throws.
  //   std::vector<double> v = load();
  //   xjob::process p([&v](int k) { write_report(v, k); }, 3);
  //   p.start();
  //   p.join();
  template <class F, class... Args>
    requires(!std::same_as<std::decay_t<F>, process> && !std::same_as<std::decay_t<F>, start_method> &&
             std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>)
  explicit process(F&& function, Args&&... args)
      : method_(start_method::fork),
        target_(std::make_unique<detail::process_target_of<std::decay_t<F>, std::decay_t<Args>...>>(
            std::forward<F>(function), std::forward<Args>(args)...)) {}

  // `function(args...)` in a child started by `method`. `function` must be a
  // plain function or a captureless lambda and the arguments transferable
  // (compile-time errors otherwise, whatever `method` is); with forkserver
  // and spawn the arguments are encoded here and decoded in the child.
  // Throws what encoding throws; start() throws if the method needs
  // xjob::init() and it did not run.
  //   void simulate(int seed, std::string out);
  //   xjob::process p(xjob::start_method::spawn, simulate, 42, std::string("run42.npy"));
  //   p.start();
  //   p.join();
  template <class F, class... Args>
    requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
  process(start_method method, F&& function, Args&&... args) : method_(method) {
    detail::require_remote_callable<F>();
    if (method == start_method::fork) {
      target_ = std::make_unique<detail::process_target_of<std::decay_t<F>, std::decay_t<Args>...>>(
          std::forward<F>(function), std::forward<Args>(args)...);
    } else {
      call_ = detail::make_remote_call<detail::call_result::dropped>(function, args...);
      has_call_ = true;
    }
  }

  process(process&& other) noexcept;
  process& operator=(process&& other) noexcept;
  process(process const&) = delete;
  process& operator=(process const&) = delete;
  // A started process that was not joined is killed (SIGKILL) and reaped.
  ~process();

  // Starts the child. Throws xjob::error if this object was started before
  // (or is empty), xjob::invalid_argument if the method needs xjob::init()
  // and it did not run, xjob::error if the fork server is gone, and
  // std::system_error if the process cannot be made.
  //   xjob::process p(work);
  //   p.start();
  void start();

  // Waits for the child to end. Throws xjob::error if it was not started.
  //   p.start();
  //   p.join();
  //   assert(!p.is_alive());
  void join();

  // Waits at most `timeout`; true if the child has ended. Throws
  // xjob::error if it was not started.
  //   if (!p.join_for(std::chrono::milliseconds(100)))
  //     p.kill();
  [[nodiscard]] bool join_for(std::chrono::duration<double> timeout);

  // The child's pid once started (-1 before). It stays valid as a number
  // after the child ended, but may name another process then.
  //   p.start();
  //   std::printf("started %d\n", p.pid());
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  // Started and not ended. Never blocks; reaps a child that has ended.
  //   while (p.is_alive()) poll_progress();
  [[nodiscard]] bool is_alive() const;

  // How the child ended: its exit status (0 if `function` returned, 1 if it
  // threw), or -N if a signal N killed it, as in Python; std::nullopt while
  // it runs or before start(). Never blocks.
  //   p.kill();
  //   p.join();
  //   assert(p.exit_code() == -SIGKILL);
  [[nodiscard]] std::optional<int> exit_code() const;

  // If `function` threw: "<type>: <message>" (e.g. "std::runtime_error:
  // boom"), also written to the child's stderr; otherwise empty. Known once
  // the child ended (after join, or exit_code() having a value).
  //   p.join();
  //   if (p.exit_code() == 1) log(p.error_message());
  [[nodiscard]] std::string const& error_message() const noexcept { return error_message_; }

  // Sends SIGTERM (terminate) or SIGKILL (kill) to a running child; does
  // nothing once it has been reaped. Throws xjob::error if not started.
  //   p.terminate();
  //   if (!p.join_for(std::chrono::seconds(1))) p.kill();
  void terminate();
  void kill();

  // How the child is (or will be) started.
  [[nodiscard]] start_method method() const noexcept { return method_; }

 private:
  void start_forked();
  void start_launched();
  void require_started(char const* what) const;
  void send_signal(int signal_number);
  // Collects the child if it ended (or waits for it if `block`); true if it
  // has been reaped.
  bool reap(bool block) const;
  void release() noexcept;

  start_method method_ = start_method::fork;
  std::unique_ptr<detail::process_target> target_;
  detail::remote_call call_;
  bool has_call_ = false;
  bool started_ = false;
  pid_t pid_ = -1;
  // The child while it is not reaped, and the caller's end of its channel
  // (the child reports a failure on it).
  struct running_child;
  struct running_child_deleter {
    void operator()(running_child* child) const noexcept;  // kills and reaps it if it runs
  };
  mutable std::unique_ptr<running_child, running_child_deleter> child_;
  mutable std::optional<int> exit_code_;
  mutable std::string error_message_;
};

}  // namespace xjob

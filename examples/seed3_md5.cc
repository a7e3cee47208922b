// Seed example 3 (SEEDS.md): MD5 a million times, in a row, one process per
// call, and on a persistent set of initialised workers.
//
// md5_million_times(msg): one running MD5; `--rounds` times (10^6 by
// default): update(msg), then msg = the hex digest of everything hashed so
// far (the running hash is not reset). From "Hello World" the article's
// final digest is 1e4110cf294414bc2ac346ad274a7af3.
//
// Then `--calls` requests (100 by default; request i hashes "Hello World i")
// five ways:
//   1. in a row, in this process;
//   2. one xjob::process per call, all started at once, each writing its
//      digest into an xjob::ipc::shared_memory block;
//   3. `--workers` long-lived xjob::processes (10 by default), each with a
//      slow start-up (`--start-up` seconds of sleep, 10 by default) done
//      once, fed round-robin through xjob::ipc pipes, stopped with an
//      "exit" message, each sending back its finish time (the article's
//      hand-made pool);
//   4. xjob::process_pool with the same initializer and map: the xjob way.
// Every variant must give the digests of the first; exit status 1 if not.
//
//   bazel run //examples:seed3_md5 [-- --rounds 100000 --calls 20 --workers 4 --start-up 1]
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xjob/delayed.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/pipe.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/ipc/shared_value.hpp>
#include <xjob/process.hpp>
#include <xjob/process_pool.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

constexpr std::size_t hex_size = 32;  // an MD5 digest in hex

// MD5 as OpenSSL 3 provides it, fetched once in main before any process
// starts (children inherit it): looking it up per call (EVP_md5() in a
// one-shot EVP_Digest) goes through a lock in OpenSSL's provider store.
EVP_MD const* md5 = nullptr;

struct md_context_free {
  void operator()(EVP_MD_CTX* context) const noexcept { EVP_MD_CTX_free(context); }
};
using md_context = std::unique_ptr<EVP_MD_CTX, md_context_free>;

md_context new_context() {
  md_context context(EVP_MD_CTX_new());
  if (!context) throw std::runtime_error("EVP_MD_CTX_new failed");
  return context;
}

// The article's function. One running MD5 context, never reset. Python's
// hexdigest() reads the running hash without finishing it (it finishes a
// copy); with EVP that is EVP_MD_CTX_copy_ex into a scratch context, then
// EVP_DigestFinal_ex on the copy. The scratch context is made once.
std::string md5_million_times(std::string msg, long rounds) {
  md_context const running = new_context();
  md_context const copy = new_context();
  if (EVP_DigestInit_ex(running.get(), md5, nullptr) != 1) throw std::runtime_error("EVP_DigestInit_ex(MD5) failed");
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  static constexpr char hex_digits[] = "0123456789abcdef";
  for (long r = 0; r < rounds; ++r) {
    unsigned int length = 0;
    if (EVP_DigestUpdate(running.get(), msg.data(), msg.size()) != 1 ||
        EVP_MD_CTX_copy_ex(copy.get(), running.get()) != 1 ||
        EVP_DigestFinal_ex(copy.get(), digest.data(), &length) != 1 || length * 2 != hex_size)
      throw std::runtime_error("MD5 through OpenSSL's EVP interface failed");
    msg.resize(hex_size);
    for (unsigned int i = 0; i < length; ++i) {
      msg[2 * i] = hex_digits[digest[i] >> 4];
      msg[2 * i + 1] = hex_digits[digest[i] & 0xf];
    }
  }
  return msg;
}

// The digest of the digests of all requests, in request order: one line
// that stands for all of them (the test recomputes it with Python).
std::string digest_of(std::vector<std::string> const& digests) {
  std::string all;
  for (auto const& d : digests) all += d;
  md_context const context = new_context();
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestInit_ex(context.get(), md5, nullptr) != 1 ||
      EVP_DigestUpdate(context.get(), all.data(), all.size()) != 1 ||
      EVP_DigestFinal_ex(context.get(), digest.data(), &length) != 1)
    throw std::runtime_error("MD5 through OpenSSL's EVP interface failed");
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

void require_clean_exit(xjob::process const& p, std::string_view what) {
  if (p.exit_code() != 0)
    throw xjob::error(fmt::format("{}: child {} ended with exit code {} {}", what, p.pid(),
                                  p.exit_code().value_or(-999), p.error_message()));
}

bool all_agree = true;

void compare(std::string_view variant, std::vector<std::string> const& got, std::vector<std::string> const& expected) {
  if (got != expected) {
    all_agree = false;
    fmt::print("{}: DIGESTS DIFFER from the calls in a row\n", variant);
  }
}

// 2. One process per call, all started at once; each writes its hex digest
// into its slot of one shared memory block.
std::vector<std::string> one_process_per_call(std::vector<std::string> const& requests, long rounds) {
  xjob::ipc::shared_memory slots(requests.size() * hex_size);
  std::vector<xjob::process> children;
  children.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i)
    children.emplace_back([&slots, &requests, i, rounds] {
      std::string const d = md5_million_times(requests[i], rounds);
      std::memcpy(slots.data() + i * hex_size, d.data(), hex_size);
    });
  for (auto& child : children) child.start();
  for (auto& child : children) child.join();
  for (auto const& child : children) require_clean_exit(child, "one process per call");
  std::vector<std::string> digests;
  for (std::size_t i = 0; i < requests.size(); ++i)
    digests.emplace_back(reinterpret_cast<char const*>(slots.data() + i * hex_size), hex_size);
  return digests;
}

// 3. The article's hand-made pool. A message is (text, number): requests
// are (msg, 0) and ("exit", 0); replies are (digest, 0), then
// ("finished", seconds since `start` when the worker finished).
using message = std::pair<std::string, double>;

struct pipe_workers_result {
  std::vector<std::string> digests;
  std::vector<double> finish_times;  // per worker
};

pipe_workers_result persistent_workers(std::vector<std::string> const& requests, long rounds, int worker_count,
                                       double start_up, clock_type::time_point start) {
  std::vector<xjob::ipc::connection<message>> mine;    // the caller's ends
  std::vector<xjob::ipc::connection<message>> theirs;  // the workers' ends
  for (int w = 0; w < worker_count; ++w) {
    auto ends = xjob::ipc::make_pipe<message>();
    mine.push_back(std::move(ends.first));
    theirs.push_back(std::move(ends.second));
  }
  std::vector<xjob::process> workers;
  workers.reserve(static_cast<std::size_t>(worker_count));
  for (int w = 0; w < worker_count; ++w)
    workers.emplace_back([&theirs, w, rounds, start_up, start] {
      auto& end = theirs[static_cast<std::size_t>(w)];
      std::this_thread::sleep_for(std::chrono::duration<double>(start_up));  // the slow initialisation, once
      for (;;) {
        message const request = end.recv();
        if (request.first == "exit") break;
        end.send({md5_million_times(request.first, rounds), 0.0});
      }
      end.send({"finished", seconds_since(start)});
    });
  for (auto& worker : workers) worker.start();

  for (std::size_t i = 0; i < requests.size(); ++i) mine[i % mine.size()].send({requests[i], 0.0});
  for (auto& end : mine) end.send({"exit", 0.0});

  pipe_workers_result result;
  result.digests.resize(requests.size());
  for (std::size_t w = 0; w < mine.size(); ++w) {
    for (std::size_t i = w; i < requests.size(); i += mine.size()) result.digests[i] = mine[w].recv().first;
    message const last = mine[w].recv();
    if (last.first != "finished")
      throw xjob::error(fmt::format("worker {} sent \"{}\", not its finish time", w, last.first));
    result.finish_times.push_back(last.second);
  }
  for (auto& worker : workers) worker.join();
  for (auto const& worker : workers) require_clean_exit(worker, "persistent workers");
  return result;
}

// 4. process_pool: the initializer runs once in each worker; it counts its
// runs in a shared_value that it attaches by name.
void slow_start(double seconds, std::string const& runs_name) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto runs = xjob::ipc::shared_value<int>::attach(runs_name);
  runs.atomic().fetch_add(1);
}

std::string md5_task(std::string msg, long rounds) { return md5_million_times(std::move(msg), rounds); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Seed example 3: MD5 a million times, in a row, one process per call, and on persistent workers");
  long rounds = 1'000'000;
  int calls = 100;
  int worker_count = 10;
  double start_up = 10.0;
  app.add_option("--rounds", rounds, "MD5 updates per call")->check(CLI::Range(1L, 1L << 40));
  app.add_option("--calls", calls, "calls (requests) per variant")->check(CLI::Range(1, 100'000));
  app.add_option("--workers", worker_count, "persistent workers")->check(CLI::Range(1, 1000));
  app.add_option("--start-up", start_up, "seconds each persistent worker sleeps once before its first request")
      ->check(CLI::Range(0.0, 3600.0));
  CLI11_PARSE(app, argc, argv);

  try {
    md5 = EVP_MD_fetch(nullptr, "MD5", nullptr);
    if (md5 == nullptr) throw std::runtime_error("OpenSSL has no MD5 (EVP_MD_fetch)");

    fmt::print("seed 3: md5_million_times with {} rounds; {} calls; {} workers with a {} s start-up\n", rounds, calls,
               worker_count, start_up);

    // One call.
    auto start = clock_type::now();
    std::string const hello = md5_million_times("Hello World", rounds);
    double const one_call = seconds_since(start);
    constexpr std::string_view article = "1e4110cf294414bc2ac346ad274a7af3";
    std::string_view const note =
        rounds == 1'000'000 ? (hello == article ? "  (the article's digest)" : "  (NOT the article's digest)") : "";
    if (rounds == 1'000'000 && hello != article) all_agree = false;
    fmt::print("{:<44} {:>9.3f} s   md5_million_times(\"Hello World\") = {}{}\n", "one call:", one_call, hello, note);

    std::vector<std::string> requests;
    for (int i = 0; i < calls; ++i) requests.push_back(fmt::format("Hello World {}", i));

    // 1. In a row.
    start = clock_type::now();
    std::vector<std::string> expected;
    for (auto const& r : requests) expected.push_back(md5_million_times(r, rounds));
    double const in_a_row = seconds_since(start);
    fmt::print("{:<44} {:>9.3f} s   ({:.1f}x one call)\n", fmt::format("{} calls in a row:", calls), in_a_row,
               in_a_row / one_call);
    std::fflush(stdout);

    // 2. One process per call.
    start = clock_type::now();
    std::vector<std::string> const per_call = one_process_per_call(requests, rounds);
    double const processes = seconds_since(start);
    fmt::print("{:<44} {:>9.3f} s   ({:.2f}x the speed of the calls in a row)\n",
               fmt::format("{} processes started at once:", calls), processes, in_a_row / processes);
    compare("one process per call", per_call, expected);
    std::fflush(stdout);

    // 3. Persistent workers fed through pipes.
    start = clock_type::now();
    pipe_workers_result const fed = persistent_workers(requests, rounds, worker_count, start_up, start);
    double const persistent = seconds_since(start);
    fmt::print("{:<44} {:>9.3f} s   (including the {} s start-up)\n",
               fmt::format("{} workers fed through ipc pipes:", worker_count), persistent, start_up);
    std::string finished;
    for (double t : fed.finish_times) finished += fmt::format(" {:.2f}", t);
    fmt::print("  the workers' finish times (s):{}\n", finished);
    compare("workers fed through pipes", fed.digests, expected);
    std::fflush(stdout);

    // 4. process_pool with an initializer, and map.
    xjob::ipc::shared_value<int> initializer_runs(0);
    start = clock_type::now();
    std::vector<std::string> pooled;
    {
      xjob::process_pool pool(
          {.processes = worker_count, .initializer = xjob::delayed(slow_start)(start_up, initializer_runs.name())});
      std::vector<std::pair<std::string, long>> arguments;
      for (auto const& r : requests) arguments.emplace_back(r, rounds);
      pooled = pool.starmap(md5_task, arguments);
    }
    double const pool_seconds = seconds_since(start);
    fmt::print("{:<44} {:>9.3f} s   (including the {} s start-up; initializer ran {} times)\n",
               fmt::format("process_pool({} workers, initializer), map:", worker_count), pool_seconds, start_up,
               initializer_runs.load());
    compare("process_pool", pooled, expected);

    fmt::print("md5 of the {} digests in request order: {}\n", calls, digest_of(expected));
    fmt::print("every variant gives the same digests: {}\n", all_agree ? "yes" : "NO");
  } catch (std::exception const& e) {
    std::fflush(stdout);
    fmt::print(stderr, "seed3_md5: {}\n", e.what());
    return 1;
  }
  return all_agree ? 0 : 1;
}

#include "joblib_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace xjob::bench {

namespace {

[[noreturn]] void bad_line(std::string const& line, std::string_view what) {
  throw std::runtime_error(fmt::format("joblib_bench.py sent a line that is not the protocol's ({}): {}", what,
                                       line.substr(0, 200)));
}

// One line from joblib_bench.py, which holds one JSON object.
nlohmann::json parse_line(std::string const& line) {
  nlohmann::json message;
  try {
    message = nlohmann::json::parse(line);
  } catch (nlohmann::json::parse_error const& e) {
    bad_line(line, e.what());
  }
  if (!message.is_object()) bad_line(line, "not a JSON object");
  return message;
}

// The string member `key` of `message`, or `fallback` if it has none.
std::string string_or(nlohmann::json const& message, char const* key, std::string fallback) {
  auto const it = message.find(key);
  return it != message.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// Requests go out with every non-ASCII character escaped, as Python's
// json.dumps sends the replies: the pipe then carries ASCII only, which
// joblib_bench.py decodes right whatever encoding its locale gives stdin.
// Throws nlohmann::json::type_error if a string is not UTF-8.
std::string protocol_line(nlohmann::json const& message) {
  return message.dump(-1, ' ', /*ensure_ascii=*/true) + '\n';
}

}  // namespace

joblib_client::joblib_client(std::string const& python, std::string const& script, std::string data_dir)
    : data_dir_(std::move(data_dir)) {
  int to_child[2] = {-1, -1};
  int from_child[2] = {-1, -1};
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
    reason_ = fmt::format("cannot make pipes: {}", std::strerror(errno));
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]})
      if (fd >= 0) ::close(fd);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  // Its own process group, so that stop() also reaches the workers joblib
  // forks (which inherit the pipes, and would keep them open).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  std::vector<char*> argv = {const_cast<char*>(python.c_str()), const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = -1;
  int const spawned = ::posix_spawnp(&pid, python.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  ::close(to_child[0]);
  ::close(from_child[1]);
  to_child_ = to_child[1];
  from_child_ = from_child[0];
  if (spawned != 0) {
    reason_ = fmt::format("cannot run {}: {}", python, std::strerror(spawned));
    ::close(to_child_);
    ::close(from_child_);
    to_child_ = from_child_ = -1;
    return;
  }
  pid_ = pid;
  group_ = pid;
  // Importing numpy and joblib takes a fraction of a second.
  auto const line = read_line(std::chrono::steady_clock::now() + std::chrono::seconds(60));
  if (!line) {
    stop(fmt::format("{} {} did not start (no greeting within 60 s)", python, script));
    return;
  }
  try {
    nlohmann::json const hello = parse_line(*line);
    auto const ready = hello.find("ready");
    if (ready == hello.end() || *ready != true) {
      stop(string_or(hello, "error", "joblib_bench.py is not ready"));
      return;
    }
    versions_ = fmt::format("python {}, joblib {}, numpy {}", string_or(hello, "python", "?"),
                            string_or(hello, "joblib", "?"), string_or(hello, "numpy", "?"));
  } catch (std::exception const& e) {
    stop(e.what());
  }
}

joblib_client::~joblib_client() {
  if (pid_ <= 0) return;
  std::string const quit = protocol_line({{"id", next_id_++}, {"command", "quit"}});
  [[maybe_unused]] ssize_t const sent = ::write(to_child_, quit.data(), quit.size());
  // Closing its stdin also ends it; it shuts its joblib workers down first.
  ::close(to_child_);
  to_child_ = -1;
  auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop("finished");
}

void joblib_client::stop(std::string const& why) noexcept {
  // The whole group: joblib's workers too, even once Python has exited.
  if (group_ > 0) ::kill(-group_, SIGKILL);
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (group_ > 0) remove_leftovers(group_);
  pid_ = -1;
  group_ = -1;
  for (int* fd : {&to_child_, &from_child_})
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  if (reason_.empty()) reason_ = why;
}

// What a Python killed before its clean-up leaves in /dev/shm and in the
// data directory: joblib_bench.py's memmapped arrays, and joblib's and
// loky's folders and semaphores, which their resource tracker removes unless
// it is killed first (a Bazel sandbox torn down does that). All their names
// carry the Python's pid.
void joblib_client::remove_leftovers(pid_t python_pid) const noexcept {
  std::string const prefixes[] = {fmt::format("xjob-joblib-{}-", python_pid),
                                  fmt::format("joblib_memmapping_folder_{}_", python_pid),
                                  fmt::format("sem.loky-{}-", python_pid)};
  for (std::string const& dir : {std::string("/dev/shm"), data_dir_}) {
    try {
      for (auto const& entry : std::filesystem::directory_iterator(dir)) {
        std::string const name = entry.path().filename().string();
        std::error_code ignored;
        for (auto const& prefix : prefixes)
          if (name.starts_with(prefix)) std::filesystem::remove_all(entry.path(), ignored);
      }
    } catch (std::exception const&) {
      // No such directory, or it changed under us: nothing more to clean.
    }
  }
}

std::optional<std::string> joblib_client::read_line(std::chrono::steady_clock::time_point deadline) {
  while (true) {
    if (auto const newline = buffered_.find('\n'); newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{from_child_, POLLIN, 0};
    int const ready = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) return std::nullopt;
    if (ready <= 0) {
      // Workers it forked may hold the pipe open after it died: no EOF then.
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return std::nullopt;
      }
      continue;
    }
    char chunk[4096];
    ssize_t const got = ::read(from_child_, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;  // it exited
    buffered_.append(chunk, static_cast<std::size_t>(got));
  }
}

joblib_client::reply joblib_client::run(nlohmann::json const& request, std::chrono::seconds timeout) {
  reply out;
  if (pid_ <= 0) {
    out.error = "joblib co-process unavailable: " + reason_;
    return out;
  }
  long const id = next_id_++;
  std::string text;
  try {
    nlohmann::json message = request;
    message["id"] = id;
    text = protocol_line(message);
  } catch (nlohmann::json::exception const& e) {
    throw std::runtime_error(fmt::format("cannot encode request {} to joblib_bench.py: {}", id, e.what()));
  }
  for (std::size_t sent = 0; sent < text.size();) {
    ssize_t const n = ::write(to_child_, text.data() + sent, text.size() - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      stop(fmt::format("joblib_bench.py stopped reading requests: {}", std::strerror(errno)));
      out.error = reason_;
      return out;
    }
    sent += static_cast<std::size_t>(n);
  }
  auto const line = read_line(std::chrono::steady_clock::now() + timeout);
  if (!line) {
    stop(fmt::format("joblib_bench.py gave no reply to request {} within {} s (killed)", id, timeout.count()));
    out.error = reason_;
    return out;
  }
  nlohmann::json const answer = parse_line(*line);
  auto const answer_id = answer.find("id");
  if (answer_id == answer.end() || *answer_id != id)
    throw std::runtime_error(fmt::format("joblib_bench.py answered request {} with id {}", id,
                                         answer_id == answer.end() ? "none" : answer_id->dump()));
  try {
    if (auto const error = answer.find("error"); error != answer.end() && !error->is_null()) {
      out.error = error->is_string() ? error->get<std::string>() : error->dump();
      return out;
    }
    out.seconds = answer.at("seconds").get<double>();
    out.result = answer.at("result").get<std::string>();
    if (auto const tasks = answer.find("tasks"); tasks != answer.end() && !tasks->is_null())
      out.tasks = tasks->get<std::size_t>();
  } catch (nlohmann::json::exception const& e) {
    bad_line(*line, e.what());
  }
  return out;
}

}  // namespace xjob::bench

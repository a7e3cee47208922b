#include "joblib_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>

extern char** environ;

namespace xjob::bench {

namespace {

[[noreturn]] void bad_json(std::string const& line, std::string_view what) {
  throw std::runtime_error(fmt::format("joblib_bench.py sent a line that is not a flat JSON object ({}): {}", what,
                                       line.substr(0, 200)));
}

void skip_space(std::string const& s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
}

std::string parse_string(std::string const& s, std::size_t& i) {
  if (i >= s.size() || s[i] != '"') bad_json(s, "a string was expected");
  ++i;
  std::string out;
  while (i < s.size() && s[i] != '"') {
    char c = s[i++];
    if (c == '\\') {
      if (i >= s.size()) bad_json(s, "the line ends in an escape");
      char const e = s[i++];
      switch (e) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'u': {
          unsigned code = 0;
          if (i + 4 > s.size() || std::from_chars(s.data() + i, s.data() + i + 4, code, 16).ptr != s.data() + i + 4)
            bad_json(s, "a malformed \\u escape");
          i += 4;
          // Python escapes non-ASCII; the messages only need to stay readable.
          c = code < 0x80 ? static_cast<char>(code) : '?';
          break;
        }
        default: c = e;  // \" \\ \/
      }
    }
    out.push_back(c);
  }
  if (i >= s.size()) bad_json(s, "an unterminated string");
  ++i;
  return out;
}

}  // namespace

json_fields parse_flat_json(std::string const& line) {
  json_fields fields;
  std::size_t i = 0;
  skip_space(line, i);
  if (i >= line.size() || line[i] != '{') bad_json(line, "no opening brace");
  ++i;
  skip_space(line, i);
  if (i < line.size() && line[i] == '}') return fields;
  while (true) {
    skip_space(line, i);
    std::string key = parse_string(line, i);
    skip_space(line, i);
    if (i >= line.size() || line[i] != ':') bad_json(line, "a colon was expected");
    ++i;
    skip_space(line, i);
    if (i < line.size() && line[i] == '"') {
      fields[key] = parse_string(line, i);
    } else {
      std::size_t const start = i;
      while (i < line.size() && line[i] != ',' && line[i] != '}') {
        if (line[i] == '{' || line[i] == '[') bad_json(line, "a nested value");
        ++i;
      }
      std::size_t end = i;
      while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
      fields[key] = line.substr(start, end - start);
    }
    skip_space(line, i);
    if (i >= line.size()) bad_json(line, "no closing brace");
    if (line[i] == '}') return fields;
    if (line[i] != ',') bad_json(line, "a comma was expected");
    ++i;
  }
}

std::string json_string(std::string const& text) {
  std::string out = "\"";
  for (char const c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else
          out.push_back(c);
    }
  }
  out += '"';
  return out;
}

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
    json_fields const hello = parse_flat_json(*line);
    auto const ready = hello.find("ready");
    if (ready == hello.end() || ready->second != "true") {
      auto const error = hello.find("error");
      stop(error != hello.end() ? error->second : "joblib_bench.py is not ready");
      return;
    }
    auto field = [&](char const* name) {
      auto const it = hello.find(name);
      return it == hello.end() ? std::string("?") : it->second;
    };
    versions_ = fmt::format("python {}, joblib {}, numpy {}", field("python"), field("joblib"), field("numpy"));
  } catch (std::exception const& e) {
    stop(e.what());
  }
}

joblib_client::~joblib_client() {
  if (pid_ <= 0) return;
  std::string const quit = fmt::format("{{\"id\": {}, \"command\": \"quit\"}}\n", next_id_++);
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

joblib_client::reply joblib_client::run(std::string const& members, std::chrono::seconds timeout) {
  reply out;
  if (pid_ <= 0) {
    out.error = "joblib co-process unavailable: " + reason_;
    return out;
  }
  long const id = next_id_++;
  std::string const request = fmt::format("{{\"id\": {}, {}}}\n", id, members);
  for (std::size_t sent = 0; sent < request.size();) {
    ssize_t const n = ::write(to_child_, request.data() + sent, request.size() - sent);
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
  json_fields const fields = parse_flat_json(*line);
  auto field = [&](char const* name) {
    auto const it = fields.find(name);
    return it == fields.end() ? std::string("null") : it->second;
  };
  if (field("id") != std::to_string(id))
    throw std::runtime_error(fmt::format("joblib_bench.py answered request {} with id {}", id, field("id")));
  if (std::string const error = field("error"); error != "null") {
    out.error = error;
    return out;
  }
  out.seconds = std::stod(field("seconds"));
  out.result = field("result");
  if (std::string const tasks = field("tasks"); tasks != "null") out.tasks = std::stoull(tasks);
  return out;
}

}  // namespace xjob::bench

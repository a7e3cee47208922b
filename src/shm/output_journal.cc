#include <xjob/detail/output_journal.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <span>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include <xjob/detail/npy.hpp>
#include <xjob/detail/shape.hpp>
#include <xjob/errors.hpp>

#include "src/core/fd.hpp"

namespace xjob::detail {

namespace {

// The journal: one header line naming the array, then fixed-size records,
// each with a checksum over itself and the header, so that a torn or
// never-written tail (a power cut while appending) reads as the end.
constexpr std::string_view journal_magic = "xjob-journal 1";
enum record_kind : std::uint64_t { plan_record = 1, done_record = 2 };
struct record {
  std::uint64_t kind = 0;
  std::uint64_t a = 0;  // plan: the axis; done: the first chunk
  std::uint64_t b = 0;  // plan: the chunk extent; done: the chunk after the last
  std::uint64_t check = 0;
};
static_assert(sizeof(record) == 32);

std::uint64_t mix(std::uint64_t x) {
  // splitmix64's finaliser: every input bit moves every output bit.
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t checksum(std::uint64_t key, record const& r) { return mix(mix(mix(key ^ r.kind) ^ r.a) ^ r.b); }

std::uint64_t text_key(std::string_view text) {
  std::uint64_t key = 0;
  for (char c : text) key = mix(key ^ static_cast<unsigned char>(c));
  return key;
}

std::string header_line(std::string_view descr, std::span<std::size_t const> shape) {
  std::string line = fmt::format("{} {} ", journal_magic, descr);
  for (std::size_t d = 0; d < shape.size(); ++d) line += fmt::format("{}{}", d == 0 ? "" : ",", shape[d]);
  return line + "\n";
}

// The header's descr and shape, if `text` starts with a well-formed header.
struct journal_header {
  std::string descr;
  std::vector<std::size_t> shape;
  std::size_t bytes = 0;
};
std::optional<journal_header> parse_header(std::string const& text) {
  std::size_t const newline = text.find('\n');
  if (newline == std::string::npos || !text.starts_with(journal_magic)) return std::nullopt;
  std::istringstream in(text.substr(journal_magic.size(), newline - journal_magic.size()));
  journal_header header;
  std::string dims;
  if (!(in >> header.descr)) return std::nullopt;
  in >> dims;  // empty for a rank-0 array
  std::istringstream dim_in(dims);
  for (std::string dim; std::getline(dim_in, dim, ',');) {
    if (dim.empty() || dim.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    header.shape.push_back(std::stoull(dim));
  }
  header.bytes = newline + 1;
  if (header_line(header.descr, header.shape) != text.substr(0, header.bytes)) return std::nullopt;
  return header;
}

std::string read_all(int fd) {
  std::string text;
  std::array<char, 65536> buffer{};
  for (off_t at = 0;;) {
    ssize_t const n = pread(fd, buffer.data(), buffer.size(), at);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "cannot read a resumable output's journal");
    }
    if (n == 0) return text;
    text.append(buffer.data(), static_cast<std::size_t>(n));
    at += n;
  }
}

std::string describe_array(std::string_view descr, std::span<std::size_t const> shape) {
  return fmt::format("shape {}, dtype {}", format_shape(shape), descr);
}

// fcntl record locks belong to a process, so they also do not pass to forked
// workers, but they cannot tell two opens in one process apart, and closing
// any descriptor of the file drops them: journals this process holds are
// kept here, by file, and refused before a second descriptor is opened.
class held_journals {
 public:
  static held_journals& instance() {
    static held_journals held;
    return held;
  }
  bool hold(std::string const& key) {
    std::lock_guard lock(mutex_);
    return keys_.insert(key).second;
  }
  void drop(std::string const& key) {
    std::lock_guard lock(mutex_);
    keys_.erase(key);
  }

 private:
  std::mutex mutex_;
  std::set<std::string> keys_;
};

// With the process's id: a forked child inherits the set but not the
// locks, so its parent's entries must not count for it.
std::chrono::milliseconds flush_interval_from_environment() {
  char const* text = std::getenv("XJOB_JOURNAL_INTERVAL_MS");
  if (text == nullptr || *text == '\0') return output_journal::default_flush_interval;
  errno = 0;
  char* end = nullptr;
  long const value = std::strtol(text, &end, 10);
  if (*end != '\0' || errno != 0 || value < 0)
    throw invalid_argument(fmt::format("XJOB_JOURNAL_INTERVAL_MS must be a count of milliseconds, got '{}'", text));
  return std::chrono::milliseconds(value);
}

std::string journal_key(std::filesystem::path const& path) {
  std::error_code ignored;
  return fmt::format("{}:{}", getpid(), std::filesystem::weakly_canonical(std::filesystem::absolute(path), ignored).string());
}

}  // namespace

output_journal::~output_journal() {
  if (fd_ >= 0) {
    ::close(fd_);
    held_journals::instance().drop(journal_key(path_));
  }
}

std::optional<output_plan> output_journal::plan() const {
  std::lock_guard lock(mutex_);
  return plan_;
}

std::string output_journal::describe(output_plan const& plan) const {
  return fmt::format("{}, axis {} cut into chunks of {}", describe_array(descr_, shape_), plan.axis,
                     plan.chunk_extent);
}

std::vector<std::size_t> output_journal::start(output_plan const& plan, std::size_t chunk_count) {
  std::lock_guard lock(mutex_);
  if (complete()) return {};
  if (plan_ && *plan_ != plan) {
    std::filesystem::path const output = path_.parent_path() / path_.stem();
    throw invalid_argument(fmt::format(
        "the unfinished output {} was planned as {}; this call plans {} (finish it with the same axis and chunk "
        "size, or delete {}.partial and {} to start over)",
        output.string(), describe(*plan_), describe(plan), output.string(), path_.string()));
  }
  if (!plan_) {
    record r{plan_record, plan.axis, plan.chunk_extent, 0};
    r.check = checksum(header_key_, r);
    write_all_at(fd_, &r, sizeof r, static_cast<std::size_t>(lseek(fd_, 0, SEEK_END)), "cannot write the journal " + path_.string());
    if (fdatasync(fd_) != 0) throw_errno(errno, fmt::format("cannot write the journal {} back to disk", path_.string()));
    plan_ = plan;
  }
  last_flush_ = std::chrono::steady_clock::now();  // the interval runs from the call's start
  std::vector<bool> done(chunk_count, false);
  for (auto const& [first, end] : done_)
    for (std::uint64_t c = first; c < std::min<std::uint64_t>(end, chunk_count); ++c) done[c] = true;
  std::vector<std::size_t> pending;
  for (std::size_t c = 0; c < chunk_count; ++c)
    if (!done[c]) pending.push_back(c);
  return pending;
}

void output_journal::append_done(std::size_t first, std::size_t end) {
  record r{done_record, first, end, 0};
  r.check = checksum(header_key_, r);
  // No fsync: the chunks' data are on disk already, so losing this record
  // to a power cut only runs them again.
  write_all_at(fd_, &r, sizeof r, static_cast<std::size_t>(lseek(fd_, 0, SEEK_END)), "cannot write the journal " + path_.string());
  done_.emplace_back(first, end);
}

void output_journal::chunks_written(std::size_t first, std::size_t end) {
  if (first >= end) return;
  {
    std::lock_guard lock(mutex_);
    if (complete()) return;
    if (!written_.empty() && written_.back().second == first) {
      written_.back().second = end;
    } else {
      written_.emplace_back(first, end);
    }
    if (std::chrono::steady_clock::now() - last_flush_ < flush_interval_) return;
  }
  // Due: this thread writes back, unless another is doing it already (it
  // will take these chunks next time).
  std::unique_lock flushing(flush_mutex_, std::try_to_lock);
  if (flushing.owns_lock()) flush_held();
}

void output_journal::flush() {
  std::lock_guard flushing(flush_mutex_);
  flush_held();
}

void output_journal::flush_quietly() noexcept {
  try {
    flush();
  } catch (...) {
    // Its chunks run again in the next run.
  }
}

void output_journal::flush_held() {
  std::vector<std::pair<std::size_t, std::size_t>> group;
  {
    std::lock_guard lock(mutex_);
    if (complete()) return;
    group.swap(written_);
    last_flush_ = std::chrono::steady_clock::now();
  }
  if (group.empty()) return;
  // Every chunk in `group` was written before it was reported, so before
  // this begins: written back with the rest of the file's dirty pages,
  // whichever process's mapping dirtied them.
  try {
    write_back(data_, data_bytes_);
  } catch (...) {
    std::lock_guard lock(mutex_);
    written_.insert(written_.begin(), group.begin(), group.end());
    throw;
  }
  std::lock_guard lock(mutex_);
  for (auto const& [first, end] : group) append_done(first, end);
}

void output_journal::finish() noexcept {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  ::unlink(path_.c_str());
  ::close(fd_);
  fd_ = -1;
  written_.clear();
  held_journals::instance().drop(journal_key(path_));
}

namespace {

// Takes the lock of the journal at `journal_path` (made if missing) for this
// process, or throws xjob::error naming who holds it.
unique_fd lock_journal(std::filesystem::path const& output, std::filesystem::path const& journal_path) {
  std::string const key = journal_key(journal_path);
  if (!held_journals::instance().hold(key))
    throw error(fmt::format("cannot resume {}: this process is writing it already (another shared_array from "
                            "resume_npy holds its journal {})",
                            output.string(), journal_path.string()));
  unique_fd fd(move_above_stdio(::open(journal_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)));
  int code = errno;
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (fd && fcntl(fd.get(), F_SETLK, &lock) == 0) return fd;
  if (fd) code = errno;
  held_journals::instance().drop(key);
  if (!fd) throw_errno(code, fmt::format("cannot open the journal {}", journal_path.string()));
  if (code == EACCES || code == EAGAIN) {
    pid_t const pid = fcntl(fd.get(), F_GETLK, &lock) == 0 ? lock.l_pid : 0;
    throw error(fmt::format("cannot resume {}: process {} is writing it (it holds the lock on {})", output.string(),
                            pid, journal_path.string()));
  }
  throw_errno(code, fmt::format("cannot lock the journal {}", journal_path.string()));
}

}  // namespace

resumed_npy resumed_npy::open(std::filesystem::path const& path, std::string const& descr,
                              std::vector<std::size_t> const& shape, std::size_t element_bytes) {
  std::size_t const data_bytes = checked_byte_count(shape, element_bytes);
  std::filesystem::path const partial_path = path.string() + ".partial";
  std::filesystem::path const journal_path = path.string() + ".journal";
  resumed_npy resumed;
  resumed.journal = std::make_shared<output_journal>();
  std::error_code missing;

  if (std::filesystem::exists(path, missing)) {
    // Complete already (a finished run, or one killed after its rename but
    // before its journal went): every chunk is done.
    resumed.region = mapped_region::open_file(path, region_access::read_write);
    std::span<std::byte const> const bytes(resumed.region.base(), resumed.region.length());
    npy_header_info info = parse_npy_header(path, bytes);
    if (info.descr != descr || info.shape != shape)
      throw invalid_argument(fmt::format("the complete output {} has {}; this run asks for {}", path.string(),
                                         describe_array(info.descr, info.shape), describe_array(descr, shape)));
    check_npy_layout(path, info, descr, element_bytes, bytes.size());
    resumed.data_offset = info.data_offset;
    if (std::filesystem::exists(journal_path, missing)) {
      output_journal stale;
      stale.fd_ = lock_journal(path, journal_path).release();
      stale.path_ = journal_path;
      ::unlink(partial_path.c_str());
      stale.finish();
    }
    return resumed;
  }

  output_journal& journal = *resumed.journal;
  journal.flush_interval_ = flush_interval_from_environment();
  journal.fd_ = lock_journal(path, journal_path).release();
  journal.path_ = journal_path;
  journal.descr_ = descr;
  journal.shape_ = shape;

  std::string const text = read_all(journal.fd_);
  std::optional<journal_header> const header = parse_header(text);
  std::string const expected_header = header_line(descr, shape);
  if (header && std::filesystem::exists(partial_path, missing)) {
    if (header->descr != descr || header->shape != shape)
      throw invalid_argument(fmt::format(
          "the unfinished output {} was planned as {}; this run asks for {} (finish it with the same shape and "
          "type, or delete {} and {} to start over)",
          path.string(), describe_array(header->descr, header->shape), describe_array(descr, shape),
          partial_path.string(), journal_path.string()));
    resumed.region = mapped_region::open_resumable_file(path, partial_path);
    std::span<std::byte const> const bytes(resumed.region.base(), resumed.region.length());
    npy_header_info info = parse_npy_header(partial_path, bytes);
    check_npy_layout(partial_path, info, descr, element_bytes, bytes.size());
    if (info.shape != shape)
      throw npy_error(partial_path, fmt::format("holds shape {}, but its journal {} says {}", format_shape(info.shape),
                                                journal_path.string(), format_shape(shape)));
    resumed.data_offset = info.data_offset;
    journal.header_key_ = text_key(expected_header);
    // The records up to the first that does not check out (a torn tail).
    std::size_t at = header->bytes;
    for (; at + sizeof(record) <= text.size(); at += sizeof(record)) {
      record r;
      std::memcpy(&r, text.data() + at, sizeof r);
      if (r.check != checksum(journal.header_key_, r)) break;
      if (r.kind == plan_record && !journal.plan_) {
        journal.plan_ = output_plan{r.a, r.b};
      } else if (r.kind == done_record && journal.plan_ && r.a < r.b) {
        journal.done_.emplace_back(r.a, r.b);
      } else {
        break;
      }
    }
    if (at != text.size() && ftruncate(journal.fd_, static_cast<off_t>(at)) != 0)
      throw_errno(errno, fmt::format("cannot cut the torn end off the journal {}", journal_path.string()));
    journal.data_ = resumed.region.base();
    journal.data_bytes_ = resumed.region.length();
    return resumed;
  }

  // Nothing to resume (or only half of it: a run killed between making the
  // two files): a new output, whose files are on disk before any chunk is.
  try {
    // The old journal's records go first: they must never describe the new
    // file.
    if (ftruncate(journal.fd_, 0) != 0 || fdatasync(journal.fd_) != 0)
      throw_errno(errno, fmt::format("cannot empty the journal {}", journal_path.string()));
    std::string const npy = npy_header(descr, shape);
    resumed.region = mapped_region::create_resumable_file(path, partial_path, npy, data_bytes);
    resumed.data_offset = npy.size();
    write_all_at(journal.fd_, expected_header.data(), expected_header.size(), 0,
                 "cannot write the journal " + journal_path.string());
    if (fdatasync(journal.fd_) != 0)
      throw_errno(errno, fmt::format("cannot write the journal {} back to disk", journal_path.string()));
    sync_directory_of(path);
  } catch (...) {
    ::unlink(partial_path.c_str());
    journal.finish();  // holds nothing yet
    throw;
  }
  journal.header_key_ = text_key(expected_header);
  journal.data_ = resumed.region.base();
  journal.data_bytes_ = resumed.region.length();
  return resumed;
}

}  // namespace xjob::detail

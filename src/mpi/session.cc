// The MPI session: start-up (thread support, xjob's communicator, the
// build-id handshake, the tail counter) and shut-down.
#include <link.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <xjob/errors.hpp>

#include "world.hpp"

namespace xjob::mpi {

namespace detail {
void check(int code, char const* function) {
  if (code == MPI_SUCCESS) return;
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int length = 0;
  if (MPI_Error_string(code, text.data(), &length) != MPI_SUCCESS) length = 0;
  throw error(fmt::format("{} failed: {}", function, std::string_view(text.data(), static_cast<std::size_t>(length))));
}
}  // namespace detail

namespace {

// Atomic: a parallel object may be made (and ask for the session) on any
// thread.
std::atomic<session*> live_session{nullptr};

// The program's GNU build id (hex), as the linker wrote it; where there is
// none, a hash of the executable's bytes. Ranks running different builds
// of a program would build different tasks and exchange results that do not
// fit: the handshake refuses them.
std::string build_id_of_program() {
  std::string id;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) -> int {
        // The first object is the program itself.
        for (int h = 0; h < info->dlpi_phnum; ++h) {
          ElfW(Phdr) const& header = info->dlpi_phdr[h];
          if (header.p_type != PT_NOTE) continue;
          auto const* at = reinterpret_cast<unsigned char const*>(info->dlpi_addr + header.p_vaddr);
          auto const* end = at + header.p_memsz;
          while (at + sizeof(ElfW(Nhdr)) <= end) {
            auto const* note = reinterpret_cast<ElfW(Nhdr) const*>(at);
            auto const* name = at + sizeof(ElfW(Nhdr));
            auto const* desc = name + ((note->n_namesz + 3) & ~3U);
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
              auto& id_out = *static_cast<std::string*>(out);
              for (unsigned i = 0; i < note->n_descsz; ++i) id_out += fmt::format("{:02x}", desc[i]);
              return 1;
            }
            at = desc + ((note->n_descsz + 3) & ~3U);
          }
        }
        return 1;
      },
      &id);
  if (!id.empty()) return id;
  // FNV-1a over the executable's bytes.
  std::ifstream file("/proc/self/exe", std::ios::binary);
  std::uint64_t hash = 14695981039346656037ULL;
  std::array<char, 1 << 16> buffer{};
  while (file.read(buffer.data(), buffer.size()) || file.gcount() > 0) {
    for (std::streamsize i = 0; i < file.gcount(); ++i) {
      hash ^= static_cast<unsigned char>(buffer[static_cast<std::size_t>(i)]);
      hash *= 1099511628211ULL;
    }
  }
  return fmt::format("fnv1a:{:016x}", hash);
}

// Every rank's fixed-size text, by rank.
std::vector<std::string> all_gather_text(MPI_Comm comm, int size, std::string const& mine) {
  constexpr std::size_t width = 256;
  std::array<char, width> own{};
  std::memcpy(own.data(), mine.data(), std::min(mine.size(), width - 1));
  std::vector<char> all(width * static_cast<std::size_t>(size));
  detail::check(MPI_Allgather(own.data(), static_cast<int>(width), MPI_CHAR, all.data(), static_cast<int>(width),
                              MPI_CHAR, comm),
                "MPI_Allgather");
  std::vector<std::string> texts;
  for (int r = 0; r < size; ++r) texts.emplace_back(all.data() + static_cast<std::size_t>(r) * width);
  return texts;
}

}  // namespace

std::string session::state::where(int of_rank) const {
  return fmt::format("rank {} on {}", of_rank, hosts.at(static_cast<std::size_t>(of_rank)));
}

session::session(int& argc, char**& argv, session_options options) : state_(new state) {
  state_->options = std::move(options);
  start(&argc, &argv);
}

session::session(session_options options) : state_(new state) {
  state_->options = std::move(options);
  start(nullptr, nullptr);
}

void session::start(int* argc, char*** argv) {
  auto fail = [this](std::string const& message) {
    delete state_;
    state_ = nullptr;
    throw error(message);
  };
  if (live_session.load() != nullptr) fail("an xjob::mpi::session exists already; make one per program");
  if (state_->options.local_backend == "mpi")
    fail("session_options::local_backend cannot be \"mpi\": it names the backend each rank runs its share on, "
         "such as \"threads\" or \"processes\"");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (initialized == 0) {
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      fail("MPI_Init_thread failed");
    state_->owns_mpi = true;
  } else {
    MPI_Query_thread(&provided);
  }
  state& s = *state_;
  try {
    if (provided < MPI_THREAD_SERIALIZED)
      throw error(fmt::format("MPI gives thread support level {}, and xjob needs MPI_THREAD_SERIALIZED ({}): a "
                              "call's collective steps may run on a thread other than main's; initialize MPI with "
                              "MPI_Init_thread(..., MPI_THREAD_SERIALIZED, ...) or let the session do it",
                              provided, MPI_THREAD_SERIALIZED));
    detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &s.comm), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(s.comm, &s.rank), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(s.comm, &s.size), "MPI_Comm_size");
    std::array<char, MPI_MAX_PROCESSOR_NAME> name{};
    int name_length = 0;
    detail::check(MPI_Get_processor_name(name.data(), &name_length), "MPI_Get_processor_name");
    s.host.assign(name.data(), static_cast<std::size_t>(name_length));
    s.hosts = all_gather_text(s.comm, s.size, s.host);

    std::vector<std::string> const ids = all_gather_text(s.comm, s.size, build_id_of_program());
    if (std::ranges::any_of(ids, [&](std::string const& id) { return id != ids.front(); })) {
      std::string listing;
      for (int r = 0; r < s.size; ++r)
        listing += fmt::format("\n  {}: build id {}", s.where(r), ids[static_cast<std::size_t>(r)]);
      throw error(fmt::format("the ranks of this MPI job run different programs, which would build different "
                              "tasks; start every rank from the same binary:{}",
                              listing));
    }

    void* base = nullptr;
    detail::check(MPI_Win_allocate(s.rank == 0 ? MPI_Aint(sizeof(std::uint64_t)) : 0, sizeof(std::uint64_t),
                                   MPI_INFO_NULL, s.comm, &base, &s.counter_window),
                  "MPI_Win_allocate");
    detail::check(MPI_Win_set_errhandler(s.counter_window, MPI_ERRORS_RETURN), "MPI_Win_set_errhandler");
    s.counter = static_cast<std::uint64_t*>(base);
    if (s.rank == 0) *s.counter = 0;
    detail::check(MPI_Barrier(s.comm), "MPI_Barrier");
    detail::check(MPI_Win_lock_all(MPI_MODE_NOCHECK, s.counter_window), "MPI_Win_lock_all");
  } catch (error const& e) {
    if (s.counter_window != MPI_WIN_NULL) MPI_Win_free(&s.counter_window);
    if (s.comm != MPI_COMM_NULL) MPI_Comm_free(&s.comm);
    if (s.owns_mpi) MPI_Finalize();
    fail(e.what());
  }
  live_session.store(this);
}

session::~session() {
  if (state_ == nullptr) return;
  state& s = *state_;
  live_session.store(nullptr);
  // Every rank reaches here together (SPMD), so the collectives below match.
  MPI_Win_unlock_all(s.counter_window);
  MPI_Win_free(&s.counter_window);
  MPI_Comm_free(&s.comm);
  if (s.owns_mpi) MPI_Finalize();
  delete state_;
}

int session::rank() const noexcept { return state_->rank; }
int session::size() const noexcept { return state_->size; }
std::string const& session::host() const noexcept { return state_->host; }
std::vector<std::string> const& session::hosts() const noexcept { return state_->hosts; }
session_options const& session::options() const noexcept { return state_->options; }
void session::barrier() const { detail::check(MPI_Barrier(state_->comm), "MPI_Barrier"); }
session* session::current() noexcept { return live_session.load(); }

}  // namespace xjob::mpi

// What the mpi backend needs of the live session: xjob's own communicator,
// the counter that hands out the tail of each call, and who is where.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <xjob/mpi.hpp>

namespace xjob::mpi {

struct session::state {
  session_options options;
  bool owns_mpi = false;  // MPI_Init_thread was ours, so MPI_Finalize is too
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD, for xjob's messages only
  int rank = 0;
  int size = 1;
  std::string host;
  std::vector<std::string> hosts;
  // One 64-bit counter on rank 0 (a window locked by every rank for the
  // session's life): how many tail tasks have been claimed, over all calls.
  MPI_Win counter_window = MPI_WIN_NULL;
  std::uint64_t* counter = nullptr;
  // The counter's value when the current call began: the same on every rank
  // (each call's end adds what every rank claimed; see mpi_backend.cc).
  std::uint64_t counter_base = 0;
  // Set while a call runs: one at a time (MPI_THREAD_SERIALIZED).
  std::atomic<bool> call_running{false};

  // "rank 2 on node7"
  [[nodiscard]] std::string where(int of_rank) const;
};

// The backend's way in to the live session's state.
struct session_access {
  static session::state& of(session& s) noexcept { return *s.state_; }
};

namespace detail {
// Throws xjob::error naming the MPI function and the library's message, if
// `code` is not MPI_SUCCESS (xjob's communicator returns errors instead of
// aborting, so that a failure is an exception on every rank).
void check(int code, char const* function);
}  // namespace detail

}  // namespace xjob::mpi

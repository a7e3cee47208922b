// xjob across machines: an MPI session and the "mpi" backend, on Open MPI.
// Bazel: @xjob//:mpi; CMake: xjob::mpi. The core never links libmpi.
//
// What: the program runs on every rank (mpirun -np N ./app, or a batch
// system's launcher), SPMD as MPI programs and mpi4py's MPICommExecutor:
// every rank builds the same parallel object and reaches the same calls in
// the same order. A call's tasks are split over the ranks, a static block
// per rank first, the last quarter handed out on demand from a counter on
// rank 0 (MPI_Fetch_and_op); each rank runs its share on a local backend
// (threads by default; processes isolate crashes), n_jobs workers per rank
// (by default the rank's CPUs). Afterwards every rank has every result in
// input order, every chunk of a map_chunks output, and the same reduction
// value, bitwise as on one machine. A task that throws on any rank makes
// every rank throw the same xjob::task_error, naming the rank and host
// (where()); a worker process that crashes makes every rank throw
// xjob::worker_crashed naming them. A rank that dies ends the job: Open MPI
// 4.1 has no fault tolerance, so mpirun stops every rank and exits non-zero.
// A resumable output (resume_npy) is refused: every rank would keep its own
// journal of one file.
//
// Needs: Open MPI (libopenmpi-dev, openmpi-bin). A program started without
// mpirun is a world of one rank.
//
// Throws: xjob::error from the session if MPI cannot start with the thread
// support xjob needs, if ranks run different programs (their build ids
// differ; every rank is named with its host and id), or if a session exists
// already. The "mpi" backend throws xjob::invalid_argument when made
// without a live session or given a resumable output, and xjob::error for
// a call while another mpi call runs (from another thread, or from inside
// a task: a task cannot make every rank take part in a call).
//
// Thread-safety: MPI runs with MPI_THREAD_SERIALIZED: one mpi call at a time
// in the process, from any thread; the program's own MPI calls must not run
// during one.
//
//   #include <xjob/xjob.hpp>
//   #include <xjob/mpi.hpp>
//   int main(int argc, char** argv) {
//     xjob::init(argc, argv);
//     xjob::mpi::session mpi(argc, argv);
//     xjob::parallel par({.backend = "mpi"});
//     auto r = par.map([](int i) { return i * i; }, std::views::iota(0, 100000));  // on every rank
//     if (mpi.rank() == 0) std::cout << r.back() << "\n";
//   }
#pragma once

#include <xjob/detail/config.hpp>

#include <string>
#include <vector>

namespace xjob::mpi {

struct session_options {
  // The backend each rank runs its share of a call on: "threads", or
  // "processes" (crashes isolated; the process options of parallel_options
  // apply), or any registered backend but "mpi".
  std::string local_backend = "threads";
};

// MPI_Init_thread .. MPI_Finalize (or neither, if the program initialized
// MPI itself; it must then ask for MPI_THREAD_SERIALIZED or more), and the
// start-up handshake. One at a time per process. Not copyable or movable.
class session {
 public:
  session(int& argc, char**& argv, session_options options = {});
  // A session for a program that passes no arguments on.
  explicit session(session_options options = {});
  session(session const&) = delete;
  session& operator=(session const&) = delete;
  ~session();

  [[nodiscard]] int rank() const noexcept;
  [[nodiscard]] int size() const noexcept;
  // This rank's host (MPI_Get_processor_name).
  [[nodiscard]] std::string const& host() const noexcept;
  // Every rank's host, by rank.
  [[nodiscard]] std::vector<std::string> const& hosts() const noexcept;
  [[nodiscard]] session_options const& options() const noexcept;
  // Waits for every rank (MPI_Barrier on xjob's communicator).
  void barrier() const;

  // The live session, or nullptr.
  [[nodiscard]] static session* current() noexcept;

  // Its state; defined in the implementation (src/mpi/world.hpp).
  struct state;

 private:
  void start(int* argc, char*** argv);
  friend struct session_access;
  state* state_;
};

}  // namespace xjob::mpi

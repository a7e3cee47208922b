// Programs for mpi_test.sh's failure cases, by their first argument:
//   handshake  starts a session and says so; built twice (two build ids),
//              so that mpirun can start ranks of different programs
//   kill       rank 1 kills itself with SIGKILL inside a map call; the job
//              must end, not hang
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <ranges>
#include <string_view>

#include <xjob/mpi.hpp>
#include <xjob/xjob.hpp>

#ifndef XJOB_SCENARIO_VARIANT
#define XJOB_SCENARIO_VARIANT 1
#endif

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  std::string_view const scenario = argc > 1 ? argv[1] : "";
  try {
    xjob::mpi::session mpi(argc, argv);
    if (scenario == "handshake") {
      std::printf("rank %d of %d started (variant %d)\n", mpi.rank(), mpi.size(), XJOB_SCENARIO_VARIANT);
      return 0;
    }
    if (scenario == "kill") {
      xjob::parallel par({.n_jobs = 2, .backend = "mpi"});
      int const victim = mpi.size() > 1 ? 1 : 0;
      auto r = par.map(
          [&mpi, victim](int i) {
            if (mpi.rank() == victim && i % 50 == 7) kill(getpid(), SIGKILL);
            usleep(1000);
            return i;
          },
          std::views::iota(0, 2000));
      std::printf("rank %d finished with %zu results: the kill did not happen\n", mpi.rank(), r.size());
      return 3;
    }
    std::fprintf(stderr, "usage: %s handshake|kill\n", argv[0]);
    return 2;
  } catch (xjob::error const& e) {
    std::fprintf(stderr, "xjob::error: %s\n", e.what());
    return 1;
  }
}

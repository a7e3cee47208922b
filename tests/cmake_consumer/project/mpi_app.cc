// The mpi component as a CMake user gets it (find_package(xjob COMPONENTS
// mpi), xjob::mpi): a map and a map_reduce on the "mpi" backend, checked
// against a plain loop on every rank; run by cmake_consumer_test under
// mpirun -np 2. Rank 0 prints "xjob mpi consumer: all checks ok on N ranks".
#include <cstdio>
#include <functional>
#include <ranges>
#include <vector>

#include <xjob/mpi.hpp>
#include <xjob/xjob.hpp>

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  xjob::mpi::session mpi(argc, argv);
  xjob::parallel par({.n_jobs = 2, .backend = "mpi"});
  std::vector<long> const squares = par.map([](int i) { return long(i) * i; }, std::views::iota(0, 1000));
  long const sum = par.map_reduce([](int i) { return long(i); }, std::views::iota(0, 1000), 0L, std::plus<>{});
  bool ok = squares.size() == 1000 && sum == 999L * 1000 / 2;
  for (int i = 0; ok && i < 1000; ++i) ok = squares[static_cast<std::size_t>(i)] == long(i) * i;
  if (!ok) {
    std::printf("xjob mpi consumer: wrong results on rank %d\n", mpi.rank());
    return 1;
  }
  if (mpi.rank() == 0) std::printf("xjob mpi consumer: all checks ok on %d ranks\n", mpi.size());
  return 0;
}

// The README's "xjob across machines" program: the same map, map_chunks and
// map_reduce code as on one machine, on every rank of an MPI job.
//   bazel build //examples:mpi_cluster
//   mpirun -np 4 bazel-bin/examples/mpi_cluster /shared/out.npy
// Rank 0 prints what every rank computed; the .npy file holds sqrt(x)*2+1
// for x = 0, 1, ... (2000 x 64 doubles).
#include <cmath>
#include <cstdio>
#include <functional>
#include <ranges>
#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/mpi.hpp>
#include <xjob/xjob.hpp>

namespace {
double score(std::vector<double> const& weights, int i) {
  return weights[static_cast<std::size_t>(i) % weights.size()] * std::sqrt(double(i));
}
}  // namespace

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  xjob::mpi::session mpi(argc, argv);  // MPI_Init_thread .. MPI_Finalize
  std::string const out_path = argc > 1 ? argv[1] : "mpi_cluster_out.npy";
  std::vector<double> const weights = {0.5, 1.0, 2.0};  // every rank computes the same data

  xjob::parallel par({.backend = "mpi"});  // every rank reaches the same calls
  std::vector<double> const r =
      par.map([&](int i) { return score(weights, i); }, std::views::iota(0, 100000));  // closures work

  std::size_t const n = 2000;
  std::size_t const m = 64;
  xt::xtensor<double, 2> const x = xt::reshape_view(xt::arange<double>(0.0, double(n * m)), {n, m});
  auto y = xjob::shared_array<double>::create_npy(out_path, {n, m});
  par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; }, y);  // committed once all succeeded

  double const s = par.map_reduce([](int i) { return 1.0 / (1.0 + i); }, std::views::iota(0, 1000000), 0.0,
                                  std::plus<>{});  // the same bits on every rank, and as on threads

  if (mpi.rank() == 0) {
    std::printf("ranks: %d, workers per rank: %d\n", mpi.size(), par.n_jobs());
    std::printf("map: %zu results, r[99999] = %.6f\n", r.size(), r.back());
    std::printf("map_chunks: y[1999, 63] = %.6f, written to %s\n", y.view<2>()(n - 1, m - 1), out_path.c_str());
    std::printf("map_reduce: %.17g\n", s);
  }
}

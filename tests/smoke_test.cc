#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xmath.hpp>
#include <oneapi/tbb/parallel_for.h>
#include <fmt/format.h>
TEST_CASE("smoke") {
  xt::xtensor<double, 1> a = {1.0, 4.0};
  xt::xtensor<double, 1> b = xt::sqrt(a);
  REQUIRE(b(1) == 2.0);
  REQUIRE(fmt::format("{}", 3) == "3");
}

#include <xjob/start_method.hpp>

#include <string>

#include <catch2/catch.hpp>

#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/process.hpp>

#include "test_support.hpp"

namespace {
void nothing() {}
}  // namespace

TEST_CASE("start methods have Python's names, both ways") {
  for (auto method : {xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn})
    REQUIRE(xjob::parse_start_method(xjob::to_string(method)) == method);
  REQUIRE(xjob::to_string(xjob::start_method::fork) == "fork");
  REQUIRE(xjob::to_string(xjob::start_method::forkserver) == "forkserver");
  REQUIRE(xjob::to_string(xjob::start_method::spawn) == "spawn");
}

TEST_CASE("an unknown start method names itself and the valid ones") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parse_start_method("vfork"), xjob::invalid_argument, "\"vfork\"");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parse_start_method(""), xjob::invalid_argument,
                                "\"fork\", \"forkserver\" and \"spawn\"");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parse_start_method("Fork"), xjob::invalid_argument, "unknown start method");
}

// This test's main (Catch's) does not call xjob::init.
TEST_CASE("forkserver and spawn refuse to start without xjob::init, saying what to do") {
  REQUIRE_FALSE(xjob::initialized());
  xjob::process spawned(xjob::start_method::spawn, nothing);
  XJOB_REQUIRE_THROWS_WITH_TEXT(spawned.start(), xjob::invalid_argument,
                                "start method spawn needs xjob::init(argc, argv) at the top of main");
  xjob::process served(xjob::start_method::forkserver, nothing);
  XJOB_REQUIRE_THROWS_WITH_TEXT(served.start(), xjob::invalid_argument,
                                "start method forkserver needs xjob::init(argc, argv) at the top of main");
  xjob::process forked(xjob::start_method::fork, nothing);
  forked.start();
  forked.join();
  REQUIRE(forked.exit_code() == 0);
}

#include <xjob/delayed.hpp>

#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace {
int add(int a, int b) { return a + b; }
}  // namespace

TEST_CASE("delayed stores the function and copies of the arguments") {
  std::string text = "abc";
  auto call = xjob::delayed([](std::string const& s, int n) { return s.size() + static_cast<std::size_t>(n); })(
      text, 2);
  text = "changed after capture";
  REQUIRE(call() == 5);
  REQUIRE(std::get<0>(call.arguments()) == "abc");
}

TEST_CASE("a delayed call can run more than once with the same arguments") {
  auto call = xjob::delayed(add)(2, 3);
  REQUIRE(call() == 5);
  REQUIRE(call() == 5);
  static_assert(std::is_same_v<decltype(call)::result_type, int>);
}

TEST_CASE("nothing runs until the call is invoked") {
  int runs = 0;
  auto call = xjob::delayed([&runs](int x) {
    ++runs;
    return x;
  })(7);
  REQUIRE(runs == 0);
  REQUIRE(call() == 7);
  REQUIRE(runs == 1);
}

TEST_CASE("void functions and move-only captured state work") {
  auto owned = std::make_shared<std::vector<int>>();
  auto call = xjob::delayed([owned](int x) { owned->push_back(x); })(4);
  static_assert(std::is_void_v<decltype(call)::result_type>);
  call();
  REQUIRE(*owned == std::vector<int>{4});
  static_assert(xjob::is_delayed_call_v<decltype(call)>);
  static_assert(!xjob::is_delayed_call_v<int>);
}

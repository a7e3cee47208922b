// xjob::ipc::make_pipe / connection<T>: ping-pong across processes, poll
// with a timeout, close as end of stream, and ends that cross by name.
#include <xjob/ipc/pipe.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "process_support.hpp"

#include "test_support.hpp"
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/queue.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace {

using xjob::testing::child_process;
using xjob::testing::shared_flag;

using xjob::ipc::connection;
using xjob::ipc::make_pipe;
using namespace std::chrono_literals;

}  // namespace

static_assert(xjob::transferable<connection<int>>, "a pipe's end travels as its name");
static_assert(xjob::transferable<connection<std::vector<double>>>);

TEST_CASE("ping-pong between a parent and a child") {
  constexpr int rounds = 2000;
  auto [parent, child_end] = make_pipe<int>();
  child_process child([&] {
    for (;;) {
      int const n = child_end.recv();
      if (n < 0) return 0;
      child_end.send(n + 1);
    }
  });
  int n = 0;
  for (int i = 0; i < rounds; ++i) {
    parent.send(n);
    std::optional<int> const back = parent.recv_for(3s);
    REQUIRE(back.has_value());
    REQUIRE(*back == n + 1);
    n = *back;
  }
  parent.send(-1);
  REQUIRE(child.wait() == 0);
  REQUIRE(n == rounds);
}

TEST_CASE("poll says whether recv would return, waiting at most its timeout") {
  auto [a, b] = make_pipe<std::string>();
  REQUIRE_FALSE(b.poll());
  auto const start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(b.poll(30ms));
  REQUIRE(std::chrono::steady_clock::now() - start >= 30ms);
  a.send("x");
  REQUIRE(b.poll());
  REQUIRE(b.poll(0ms));
  REQUIRE_FALSE(a.poll());  // the other direction is still empty
  REQUIRE(b.recv() == "x");
  child_process child([&] {
    std::this_thread::sleep_for(30ms);
    b.send("late");
    return 0;
  });
  REQUIRE(a.poll(3s));
  REQUIRE(a.recv() == "late");
  REQUIRE(child.wait() == 0);
}

TEST_CASE("both directions at once, with vectors") {
  // Each side sends before it receives, so messages cross in both directions
  // at the same time (a full direction would block its sender).
  auto [a, b] = make_pipe<std::vector<double>>(4);
  child_process child([&] {
    for (int i = 0; i < 300; ++i) {
      b.send(std::vector<double>(static_cast<std::size_t>(i), 1.0));
      std::optional<std::vector<double>> got = b.recv_for(3s);
      if (!got || got->size() != static_cast<std::size_t>(i) || (i > 0 && (*got)[0] != 2.0)) return 1;
    }
    return 0;
  });
  for (int i = 0; i < 300; ++i) {
    REQUIRE(a.send_for(std::vector<double>(static_cast<std::size_t>(i), 2.0), 3s));
    std::optional<std::vector<double>> got = a.recv_for(3s);
    REQUIRE(got.has_value());
    REQUIRE(got->size() == static_cast<std::size_t>(i));
    if (i > 0) REQUIRE((*got)[0] == 1.0);
  }
  REQUIRE(child.wait() == 0);
}

TEST_CASE("close is the end of the stream for the other end") {
  auto [a, b] = make_pipe<int>();
  a.send(1);
  a.send(2);
  a.close();
  REQUIRE_FALSE(a.valid());
  REQUIRE_THROWS_AS(a.send(3), xjob::error);
  REQUIRE_THROWS_AS(b.send(3), xjob::ipc::closed_error);
  REQUIRE(b.poll());
  REQUIRE(b.recv() == 1);
  REQUIRE(b.recv() == 2);
  REQUIRE(b.poll());  // recv would not block: it throws
  REQUIRE_THROWS_AS(b.recv(), xjob::ipc::closed_error);
  REQUIRE(b.try_recv() == std::nullopt);
}

TEST_CASE("a child waiting in recv learns that the parent closed its end") {
  auto [parent, child_end] = make_pipe<int>();
  child_process child([&] {
    try {
      (void)child_end.recv();
      return 1;
    } catch (xjob::ipc::closed_error const&) {
      return 0;
    }
  });
  std::this_thread::sleep_for(30ms);
  parent.close();
  REQUIRE(child.wait() == 0);
}

TEST_CASE("dropping an end does not close the pipe") {
  auto ends = make_pipe<int>();
  connection<int> kept = std::move(ends.first);
  { connection<int> dropped = std::move(ends.second); }
  kept.send(5);
  REQUIRE_FALSE(kept.try_recv().has_value());
}

TEST_CASE("a message larger than the byte budget is an invalid_argument naming both sizes") {
  auto [a, b] = make_pipe<std::string>(4, 32);
  XJOB_REQUIRE_THROWS_WITH_TEXT(a.send(std::string(100, 'z')), xjob::invalid_argument, "108 bytes");
  XJOB_REQUIRE_THROWS_WITH_TEXT(a.send(std::string(100, 'z')), xjob::invalid_argument, "32 bytes");
  REQUIRE(a.try_send("fits"));
  REQUIRE(b.recv() == "fits");
}

TEST_CASE("pipe ends attached by name, or through cereal, are the same ends") {
  auto [a, b] = make_pipe<int>();
  std::string const name_a = a.name();
  std::string const name_b = b.name();
  REQUIRE(name_a.ends_with("#0"));
  REQUIRE(name_b.ends_with("#1"));
  REQUIRE(name_a.substr(0, name_a.size() - 2) == name_b.substr(0, name_b.size() - 2));
  child_process child([&] {
    connection<int> mine = connection<int>::attach(name_b);  // as a process not forked from the creator would
    mine.send(mine.recv() * 2);
    return 0;
  });
  a.send(21);
  REQUIRE(a.recv_for(3s) == 42);
  REQUIRE(child.wait() == 0);
  connection<int> arrived = xjob::detail::decode_value<connection<int>>(xjob::detail::encode_value(b), "an end");
  a.send(9);
  REQUIRE(arrived.recv() == 9);
}

TEST_CASE("bad pipe names are invalid_arguments") {
  auto [a, b] = make_pipe<int>();
  std::string const name = a.name();
  XJOB_REQUIRE_THROWS_WITH_TEXT(connection<int>::attach(name.substr(0, name.size() - 2)), xjob::invalid_argument,
                                "#<0 or 1>");
  XJOB_REQUIRE_THROWS_WITH_TEXT(connection<int>::attach(name.substr(0, name.size() - 1) + "2"),
                                xjob::invalid_argument, "#<0 or 1>");
  XJOB_REQUIRE_THROWS_WITH_TEXT(connection<long>::attach(name), xjob::invalid_argument, "not long");
  xjob::ipc::queue<int> q(2);
  XJOB_REQUIRE_THROWS_WITH_TEXT(connection<int>::attach(q.name() + "#0"), xjob::invalid_argument,
                                "names an xjob::ipc::queue");
  connection<int> empty;
  REQUIRE_THROWS_AS(empty.recv(), xjob::error);
  REQUIRE_THROWS_AS(empty.poll(), xjob::error);
}

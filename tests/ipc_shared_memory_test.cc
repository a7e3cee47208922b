// xjob::ipc::shared_memory: a memfd block that forked children share and
// other processes attach by name; bad names are errors that say why; no
// descriptor leaks and nothing appears in /dev/shm.
#include <xjob/ipc/shared_memory.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "process_support.hpp"

#include "test_support.hpp"
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/transfer.hpp>

namespace {

using xjob::testing::child_process;

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  std::error_code ignored;
  for (auto const& entry : std::filesystem::directory_iterator("/dev/shm", ignored))
    names.insert(entry.path().filename().string());
  return names;
}

int fd_of(std::string const& name) {
  std::smatch match;
  std::regex const pattern("xjob-shm:([0-9]+):([0-9]+):([0-9]+)");
  REQUIRE(std::regex_match(name, match, pattern));
  return std::stoi(match[2].str());
}

using xjob::ipc::shared_memory;

}  // namespace

static_assert(xjob::transferable<shared_memory>, "a shared_memory travels as its name");

TEST_CASE("shared_memory is zero-filled, sized, named after this process, and close-on-exec") {
  shared_memory block(10000);
  REQUIRE(block.valid());
  REQUIRE(block.size() == 10000);
  REQUIRE(block.data() != nullptr);
  std::vector<std::byte> zeros(10000);
  REQUIRE(std::memcmp(block.data(), zeros.data(), zeros.size()) == 0);
  std::string const name = block.name();
  REQUIRE(name.starts_with("xjob-shm:" + std::to_string(getpid()) + ":"));
  int const fd = fd_of(name);
  REQUIRE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

// As for shared arrays: a daemon's closed stdin and stdout stay free.
TEST_CASE("shared_memory never takes the places of stdin and stdout") {
  shared_memory block, attached;
  std::string const failure = xjob::testing::without_stdin_and_stdout([&] {
    block = shared_memory(4096);
    attached = shared_memory::attach(block.name());
  });
  REQUIRE(failure.empty());
  REQUIRE(attached.size() == 4096);
}

TEST_CASE("shared_memory of 0 bytes is an invalid_argument") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory(0), xjob::invalid_argument, "0 bytes");
}

TEST_CASE("a forked child's writes to shared_memory are seen by the parent") {
  shared_memory block(4096);
  child_process child([&] {
    std::memcpy(block.data(), "from the child", 15);
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(std::string(reinterpret_cast<char const*>(block.data())) == "from the child");
}

TEST_CASE("shared_memory attached by name is the same memory") {
  shared_memory block(8192);
  shared_memory same = shared_memory::attach(block.name());
  REQUIRE(same.size() == 8192);
  REQUIRE(same.data() != block.data());
  block.data()[8000] = std::byte{42};
  REQUIRE(same.data()[8000] == std::byte{42});
  same.data()[1] = std::byte{7};
  REQUIRE(block.data()[1] == std::byte{7});

  SECTION("an attached handle has a name of its own, valid after the creator's handle is closed") {
    std::string const second = same.name();
    REQUIRE(second != block.name());
    block.close();
    REQUIRE_FALSE(block.valid());
    shared_memory third = shared_memory::attach(second);
    REQUIRE(third.data()[8000] == std::byte{42});
  }
}

TEST_CASE("a child that dropped its inherited mapping attaches by the parent's name") {
  shared_memory block(4096);
  std::string const name = block.name();
  child_process child([&] {
    block.close();  // as if it had not been forked from the creator
    shared_memory mine = shared_memory::attach(name);
    if (mine.size() != 4096) return 1;
    std::memcpy(mine.data(), "attached", 9);
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(std::string(reinterpret_cast<char const*>(block.data())) == "attached");
}

TEST_CASE("bad shared_memory names are invalid_arguments that name the name and say why") {
  for (std::string const bad : {"nope", "xjob-shm:", "xjob-shm:1:2", "xjob-shm:x:1:2", "xjob-shm:1:2:3:4",
                                "xjob-shm:1:2:3 ", "xjob-shm:-1:2:3"}) {
    INFO(bad);
    XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory::attach(bad), xjob::invalid_argument, "\"" + bad + "\"");
    XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory::attach(bad), xjob::invalid_argument, "not a name of the form");
  }

  SECTION("a closed block's name") {
    shared_memory block(4096);
    std::string const name = block.name();
    block.close();
    REQUIRE_THROWS_AS(shared_memory::attach(name), xjob::invalid_argument);
    REQUIRE_THROWS_WITH(shared_memory::attach(name), Catch::Contains(name));
  }

  SECTION("a name whose descriptor is now another file") {
    shared_memory block(4096);
    std::string const name = block.name();
    int const fd = fd_of(name);
    block.close();
    int const other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // takes the lowest free number: fd
    REQUIRE(other == fd);
    XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory::attach(name), xjob::invalid_argument, "another file now");
    ::close(other);
  }

  SECTION("a name with the wrong inode") {
    shared_memory block(4096);
    std::string name = block.name();
    name += "7";
    XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory::attach(name), xjob::invalid_argument, "another file now");
  }

  SECTION("the name of a process that has exited") {
    shared_memory block(4096);
    std::string const name = block.name();
    pid_t dead = 0;
    {
      child_process child([] { return 0; });
      dead = child.pid();
      REQUIRE(child.wait() == 0);
    }
    std::string const gone = std::regex_replace(name, std::regex("^xjob-shm:[0-9]+:"), "xjob-shm:" + std::to_string(dead) + ":");
    XJOB_REQUIRE_THROWS_WITH_TEXT(shared_memory::attach(gone), xjob::invalid_argument, "does not exist or no longer holds it");
  }
}

TEST_CASE("an empty shared_memory has no name, and a moved-from one is empty") {
  shared_memory empty;
  REQUIRE_FALSE(empty.valid());
  REQUIRE(empty.data() == nullptr);
  REQUIRE_THROWS_AS(empty.name(), xjob::error);
  shared_memory block(100);
  shared_memory moved = std::move(block);
  REQUIRE(moved.valid());
  REQUIRE_FALSE(block.valid());  // NOLINT(bugprone-use-after-move): moved-from is specified empty
  REQUIRE_THROWS_AS(block.name(), xjob::error);
}

TEST_CASE("shared_memory travels through cereal as its name") {
  shared_memory block(4096);
  block.data()[3] = std::byte{3};
  std::string const bytes = xjob::detail::encode_value(block);
  shared_memory arrived = xjob::detail::decode_value<shared_memory>(bytes, "a shared_memory");
  REQUIRE(arrived.size() == 4096);
  REQUIRE(arrived.data()[3] == std::byte{3});
}

TEST_CASE("shared_memory leaks no descriptor and creates nothing in /dev/shm") {
  auto const shm_before = dev_shm_entries();
  std::size_t const fds_before = xjob::testing::open_descriptor_count();
  {
    std::vector<shared_memory> blocks;
    for (int i = 0; i < 20; ++i) blocks.emplace_back(std::size_t(1) << 16);
    std::vector<shared_memory> attached;
    for (auto const& b : blocks) attached.push_back(shared_memory::attach(b.name()));
    REQUIRE(xjob::testing::open_descriptor_count() == fds_before + 40);
    REQUIRE(dev_shm_entries() == shm_before);
    for (int i = 0; i < 5; ++i) REQUIRE_THROWS(shared_memory::attach("xjob-shm:1:99999:1"));
    attached[0].close();
    REQUIRE(xjob::testing::open_descriptor_count() == fds_before + 39);
  }
  REQUIRE(xjob::testing::open_descriptor_count() == fds_before);
  REQUIRE(dev_shm_entries() == shm_before);
}

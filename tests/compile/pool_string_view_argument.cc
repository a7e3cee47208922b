// Must not compile: a std::string_view argument for a process_pool task,
// even made before the pool started: its characters stay in the caller (see
// tests/BUILD).
#include <cstddef>
#include <string_view>

#include <xjob/process_pool.hpp>

std::size_t length(std::string_view text) { return text.size(); }

int main() {
  xjob::process_pool pool(1);
  return pool.submit(length, std::string_view("abc")).get() == 3 ? 0 : 1;
}

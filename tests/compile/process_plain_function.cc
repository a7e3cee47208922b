// Must compile: the control case of process_compile_test (tests/BUILD), with the same
// headers and flags. A plain function and a captureless lambda with
// transferable arguments, for every start method; any closure with fork;
// the same functions for a process_pool.
#include <string>
#include <vector>

#include <xjob/process.hpp>
#include <xjob/process_pool.hpp>

void simulate(int seed, std::string const& out) { (void)seed, (void)out; }

int main() {
  int state = 3;
  xjob::process a(xjob::start_method::spawn, simulate, 42, std::string("x"));
  xjob::process b(xjob::start_method::forkserver, [](std::vector<int> v) { return v.size(); }, std::vector<int>{1});
  xjob::process c([&state] { ++state; });
  xjob::process_pool pool(1);
  auto f = pool.submit(simulate, 7, std::string("y"));
  auto g = pool.map([](int k) { return k * 2; }, std::vector<int>{1, 2});
  return a.pid() + b.pid() + c.pid() == -3 && f.valid() && g.size() == 2 ? 0 : 1;
}

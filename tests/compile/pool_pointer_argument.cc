// Must not compile: a pointer argument for a process_pool task. The worker
// would get the address, not what it points to (see tests/BUILD).
#include <xjob/process_pool.hpp>

double first(double const* values) { return values[0]; }

int main() {
  xjob::process_pool pool(1);
  double const values[] = {1.0, 2.0};
  return pool.submit(first, &values[0]).get() == 1.0 ? 0 : 1;
}

// "sequential": every task on the caller's thread, in order. The oracle the
// conformance suite checks every other backend against.
#include "sequential_backend.hpp"

namespace xjob::detail {

namespace {
class sequential_backend final : public backend {
 public:
  void run(batch_call& call) override { call.work(0); }
};
}  // namespace

std::unique_ptr<backend> make_sequential_backend(backend_settings const&) {
  return std::make_unique<sequential_backend>();
}

}  // namespace xjob::detail

// The "sequential" backend, which the registry holds from the start: every
// other backend registers itself from its own target (see backend_registry.cc).
#pragma once

#include <memory>

#include <xjob/backend.hpp>

namespace xjob::detail {

[[nodiscard]] std::unique_ptr<backend> make_sequential_backend(backend_settings const& settings);

}  // namespace xjob::detail

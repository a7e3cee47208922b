// Factories of the backends xjob registers by itself.
#pragma once

#include <memory>

#include <xjob/backend.hpp>

namespace xjob::detail {

[[nodiscard]] std::unique_ptr<backend> make_sequential_backend(backend_settings const& settings);
[[nodiscard]] std::unique_ptr<backend> make_threads_backend(backend_settings const& settings);
[[nodiscard]] std::unique_ptr<backend> make_processes_backend(backend_settings const& settings);

}  // namespace xjob::detail

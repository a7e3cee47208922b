#include <xjob/start_method.hpp>

#include <string>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob {

std::string_view to_string(start_method method) noexcept {
  switch (method) {
    case start_method::fork:
      return "fork";
    case start_method::forkserver:
      return "forkserver";
    case start_method::spawn:
      return "spawn";
  }
  return "unknown";
}

start_method parse_start_method(std::string_view name) {
  for (start_method method : {start_method::fork, start_method::forkserver, start_method::spawn})
    if (name == to_string(method)) return method;
  throw invalid_argument(
      fmt::format("unknown start method \"{}\": the start methods are \"fork\", \"forkserver\" and \"spawn\"", name));
}

}  // namespace xjob

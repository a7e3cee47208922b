#include <xjob/backend.hpp>

#include <algorithm>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include <xjob/errors.hpp>

#include "sequential_backend.hpp"

namespace xjob {

namespace {

// "sequential" is part of the front end's own layer, so it is here from the
// start. "threads" and "processes" live in layers above this one (they need
// oneTBB and the process layer, which the front end must not), and register
// themselves when their library is loaded (backend_registrar, in targets
// built with alwayslink so a static link keeps them). The registry is made
// on first use, so registrars may run in any order.
struct registry {
  registry() { factories.emplace("sequential", &detail::make_sequential_backend); }
  std::mutex mutex;
  std::map<std::string, backend_factory, std::less<>> factories;
};

registry& backends() {
  static registry instance;
  return instance;
}

}  // namespace

void register_backend(std::string name, backend_factory factory) {
  if (name.empty()) throw invalid_argument("a backend needs a name, got an empty one");
  if (!factory) throw invalid_argument(fmt::format("backend '{}' needs a factory, got an empty one", name));
  registry& r = backends();
  std::lock_guard lock(r.mutex);
  r.factories.insert_or_assign(std::move(name), std::move(factory));
}

std::vector<std::string> registered_backends() {
  registry& r = backends();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (auto const& [name, factory] : r.factories) names.push_back(name);
  return names;
}

bool is_registered_backend(std::string_view name) {
  registry& r = backends();
  std::lock_guard lock(r.mutex);
  return r.factories.find(name) != r.factories.end();
}

std::unique_ptr<backend> make_backend(std::string_view name, backend_settings const& settings) {
  backend_factory factory;
  {
    registry& r = backends();
    std::lock_guard lock(r.mutex);
    auto const found = r.factories.find(name);
    if (found == r.factories.end()) {
      std::vector<std::string> names;
      for (auto const& [known, f] : r.factories) names.push_back(known);
      throw invalid_argument(
          fmt::format("unknown backend '{}'; registered backends: {}", name, fmt::join(names, ", ")));
    }
    factory = found->second;
  }
  std::unique_ptr<backend> made = factory(settings);
  if (!made) throw invalid_argument(fmt::format("the factory of backend '{}' returned no backend", name));
  return made;
}

}  // namespace xjob

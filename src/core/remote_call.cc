#include <xjob/detail/remote_call.hpp>

#include <elf.h>
#include <link.h>

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob::detail {

namespace {

struct module_search {
  // Input: an address to locate, or a module name to find.
  std::uintptr_t address = 0;
  std::string const* name = nullptr;
  std::uint64_t offset = 0;
  // Output.
  bool found = false;
  std::string module;
  std::uintptr_t base = 0;
  bool executable = false;
};

bool in_segment(dl_phdr_info const* info, std::uintptr_t address, bool* executable) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    ElfW(Phdr) const& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD) continue;
    std::uintptr_t const first = info->dlpi_addr + segment.p_vaddr;
    if (address >= first && address < first + segment.p_memsz) {
      *executable = (segment.p_flags & PF_X) != 0;
      return true;
    }
  }
  return false;
}

int visit(dl_phdr_info* info, std::size_t, void* data) {
  auto& search = *static_cast<module_search*>(data);
  char const* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (search.name != nullptr) {
    // The main program is the first module and has no name.
    if (*search.name != name) return 0;
    search.base = info->dlpi_addr;
    search.found = in_segment(info, info->dlpi_addr + search.offset, &search.executable);
    return 1;
  }
  if (!in_segment(info, search.address, &search.executable)) return 0;
  search.found = true;
  search.module = name;
  search.base = info->dlpi_addr;
  return 1;
}

}  // namespace

code_address locate_code(void const* address) {
  module_search search;
  search.address = reinterpret_cast<std::uintptr_t>(address);
  dl_iterate_phdr(visit, &search);
  if (!search.found || !search.executable)
    throw error(fmt::format("the function at {} is not code of any loaded module, so no other process can run it",
                            address));
  return {search.module, static_cast<std::uint64_t>(search.address - search.base)};
}

void const* resolve_code(code_address const& where) {
  module_search search;
  search.name = &where.module;
  search.offset = where.offset;
  dl_iterate_phdr(visit, &search);
  std::string const module = where.module.empty() ? std::string("the main program") : where.module;
  if (!search.found || !search.executable)
    throw error(fmt::format("cannot find the function to run at offset {:#x} of {} in this worker process: the "
                            "module is not loaded here (a library loaded with dlopen() after the worker started?)",
                            where.offset, module));
  return reinterpret_cast<void const*>(search.base + where.offset);
}

}  // namespace xjob::detail

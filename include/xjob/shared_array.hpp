// shared_array<T>: an n-dimensional array in shared memory that every
// backend's workers can read and write in place (threads, and forked
// processes), seen from C++ as an xtensor adaptor (view(), built in
// <xjob/shared_array_view.hpp>; this header parses no xtensor). Anonymous by
// default, or backed by a .npy file that NumPy can open. Move-only.
#pragma once

#include <xjob/detail/config.hpp>

#include <array>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xjob/detail/mapped_region.hpp>
#include <xjob/detail/output_journal.hpp>
#include <xjob/errors.hpp>
#include <xjob/detail/npy.hpp>
#include <xjob/detail/shape.hpp>

namespace xjob {

// Tag: the new array's contents are unspecified (like numpy.empty); it may
// reuse recycled memory without clearing it.
struct uninitialized_t {
  explicit uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

// Releases the anonymous shared memory that xjob keeps for reuse. Freed
// shared_arrays of 1 MiB or more are cached, up to XJOB_SHM_CACHE_BYTES
// (default: an eighth of physical memory), because mapping fresh shared
// memory costs page faults that reuse avoids. Thread-safe.
void trim_shared_memory_cache() noexcept;
// Bytes currently cached. Thread-safe.
[[nodiscard]] std::size_t shared_memory_cache_bytes() noexcept;

namespace detail {
struct shared_array_access;

// view() is built in <xjob/shared_array_view.hpp>: it calls
// make_xtensor_view, found by argument-dependent lookup where view() is
// used. This overload, a worse match than the real ones, says what to
// include when that header is missing.
struct xtensor_view_missing {};
struct xtensor_view_hook : xtensor_view_missing {};
template <class... Args>
void make_xtensor_view(xtensor_view_missing, Args const&...) {
  static_assert(sizeof...(Args) == 0,
                "xjob: shared_array::view() needs `#include <xjob/shared_array_view.hpp>` (or <xjob/xjob.hpp>)");
}
}  // namespace detail

// T is an arithmetic or complex type NumPy knows; `shared_array<const T>` is
// a read-only array (open_npy maps the file read-only). Distinct arrays may
// be used from different threads; one array may be read concurrently and
// written concurrently at disjoint elements.
//   xjob::shared_array<double> a({1000, 3});          // zero-filled
//   a.view()(2, 1) = 4.0;
//   auto f = xjob::shared_array<double>::create_npy("out.npy", {1 << 20, 16});
//   auto r = xjob::shared_array<const double>::open_npy("out.npy");
template <class T>
class shared_array {
  static_assert(detail::has_npy_descr_v<T>,
                "shared_array<T> needs an arithmetic or std::complex element type that .npy files can hold");

 public:
  using value_type = std::remove_const_t<T>;
  using element_type = T;
  using shape_type = std::vector<std::size_t>;

  // An empty rank-1 array of extent 0.
  shared_array() : shape_{0} {}

  // Zero-filled anonymous shared memory. With XJOB_HUGE_PAGES=on in the
  // environment, an array of at least one huge page is made of the
  // machine's reserved huge pages (vm.nr_hugepages) where the pool has room
  // for all of it, else of ordinary pages as without it: its first touch
  // then costs a fault per 2 MiB instead of per 4 KiB. Throws
  // xjob::invalid_argument if the shape's byte count overflows,
  // std::system_error if memory cannot be mapped.
  explicit shared_array(shape_type shape) : shared_array(std::move(shape), detail::region_fill::zeroed) {}
  // Contents unspecified: may reuse recycled memory without clearing it.
  shared_array(shape_type shape, uninitialized_t)
      : shared_array(std::move(shape), detail::region_fill::unspecified) {}

  // A new, zero-filled .npy file at `path` (replaced if it exists), mapped
  // read-write. Until commit() the file exists only under a temporary name
  // beside `path` (`<path>.XXXXXX.partial`), so an output left incomplete
  // never looks complete; an uncommitted file is deleted with the array.
  // Throws std::system_error when the file cannot be made or its space
  // reserved (a full disk or /dev/shm: ENOSPC), xjob::invalid_argument for a
  // shape whose byte count overflows.
  [[nodiscard]] static shared_array create_npy(std::filesystem::path const& path, shape_type shape)
    requires(!std::is_const_v<T>)
  {
    std::size_t const bytes = detail::checked_byte_count(shape, sizeof(T));
    std::string const header = detail::npy_header(detail::npy_descr<T>(), shape);
    shared_array array;
    array.region_ = detail::mapped_region::create_file(path, header, bytes);
    array.offset_ = header.size();
    array.shape_ = std::move(shape);
    return array;
  }

  // A resumable .npy output at `path`: fresh, or the unfinished output an
  // earlier run left (killed, or its call failed), or the complete file
  // already at `path`. map_chunks into it runs only the chunks its journal
  // does not record as done, then commits (see "Resumable outputs" in the
  // README). Until then the data live in `<path>.partial` and the plan and
  // the finished chunks in `<path>.journal`; both stay when the array is
  // dropped uncommitted, for the next run. A chunk is journaled only after
  // its data were written back to disk, so a SIGKILL or a power cut never
  // leaves a chunk recorded that is not there. One writer at a time: the
  // journal is locked while the array lives.
  // Throws xjob::invalid_argument if the unfinished or complete output has
  // another shape or dtype (naming both), xjob::error if another process
  // (or array) is writing it, std::system_error if the files cannot be made
  // (ENOSPC), xjob::npy_error for a damaged file.
  //   auto out = xjob::shared_array<double>::resume_npy("out.npy", {rows, cols});
  //   par.map_chunks(x, f, out);   // the chunks not yet done, then commits
  [[nodiscard]] static shared_array resume_npy(std::filesystem::path const& path, shape_type shape)
    requires(!std::is_const_v<T>)
  {
    detail::resumed_npy resumed =
        detail::resumed_npy::open(path, std::string(detail::npy_descr<T>()), shape, sizeof(T));
    shared_array array;
    array.region_ = std::move(resumed.region);
    array.offset_ = resumed.data_offset;
    array.shape_ = std::move(shape);
    array.journal_ = std::move(resumed.journal);
    return array;
  }

  // Maps an existing C-ordered .npy file whose dtype is T's, read-only for
  // shared_array<const T>, else read-write (writes go to the file). Throws
  // xjob::npy_error naming the file and the problem (missing, unreadable,
  // bad header, other dtype, Fortran order, truncated).
  [[nodiscard]] static shared_array open_npy(std::filesystem::path const& path) {
    shared_array array;
    array.region_ = detail::mapped_region::open_file(
        path, std::is_const_v<T> ? detail::region_access::read_only : detail::region_access::read_write);
    std::span<std::byte const> const bytes(array.region_.base(), array.region_.length());
    detail::npy_header_info info = detail::parse_npy_header(path, bytes);
    detail::check_npy_layout(path, info, detail::npy_descr<T>(), sizeof(T), bytes.size());
    array.offset_ = info.data_offset;
    array.shape_ = std::move(info.shape);
    return array;
  }

  shared_array(shared_array&&) noexcept = default;
  shared_array& operator=(shared_array&&) noexcept = default;
  shared_array(shared_array const&) = delete;
  shared_array& operator=(shared_array const&) = delete;
  ~shared_array() = default;

  [[nodiscard]] T* data() const noexcept {
    return region_.base() == nullptr ? nullptr : reinterpret_cast<T*>(region_.base() + offset_);
  }
  [[nodiscard]] std::size_t size() const noexcept { return detail::element_count(shape_); }
  [[nodiscard]] std::size_t bytes() const noexcept { return size() * sizeof(T); }
  [[nodiscard]] std::size_t dimension() const noexcept { return shape_.size(); }
  [[nodiscard]] shape_type const& shape() const noexcept { return shape_; }
  [[nodiscard]] T* begin() const noexcept { return data(); }
  [[nodiscard]] T* end() const noexcept { return data() + size(); }

  // An xtensor adaptor over the mapped memory, with the array's shape and
  // dynamic rank. Valid while the array lives. Needs
  // #include <xjob/shared_array_view.hpp> (or <xjob/xjob.hpp>).
  //   auto v = a.view();  v(0, 1) = 2.0;  double s = xt::sum(v)();
  [[nodiscard]] auto view() const { return make_xtensor_view(detail::xtensor_view_hook{}, *this); }

  // The same with a fixed rank N (faster indexing); throws
  // xjob::invalid_argument if the array's rank is not N.
  template <std::size_t N>
  [[nodiscard]] auto view() const {
    detail::check_rank(shape_.size(), N);
    return make_xtensor_view(detail::xtensor_view_hook{}, *this, std::integral_constant<std::size_t, N>{});
  }

  // For a file made by create_npy: gives it its final name (see there).
  // Idempotent; a no-op for other arrays. Throws std::system_error if the
  // rename fails. map_chunks commits its output when the call succeeds.
  void commit() {
    region_.commit();
    if (journal_) journal_->finish();
  }
  [[nodiscard]] bool is_file_backed() const noexcept { return region_.is_file(); }
  [[nodiscard]] bool committed() const noexcept { return region_.committed(); }
  // The final path of a file-backed array; empty for anonymous memory.
  [[nodiscard]] std::filesystem::path const& path() const noexcept { return region_.path(); }

  // cereal, for an argument of a task in another process (a process_pool
  // task, a delayed call on warm workers): the array travels by name and the
  // task attaches the same memory, not a copy, so what the task writes the
  // caller sees. The array must live until the task has run. An array made
  // in a worker cannot come back as a result: it is gone with the task
  // (xjob::invalid_argument on arrival says so).
  //   void scale(xjob::shared_array<double> const& a, double f);   // writes the caller's memory
  //   pool.submit(scale, a, 2.0).get();                              // a's elements are doubled
  template <class Archive>
  void save(Archive& archive) const {
    archive(region_.base() != nullptr ? region_.share_name() : std::string(), offset_, shape_);
  }
  template <class Archive>
  void load(Archive& archive) {
    std::string name;
    std::size_t offset = 0;
    shape_type shape;
    archive(name, offset, shape);
    detail::mapped_region region;
    if (!name.empty())
      region = detail::mapped_region::attach(
          name, std::is_const_v<T> ? detail::region_access::read_only : detail::region_access::read_write);
    std::size_t const bytes = detail::checked_byte_count(shape, sizeof(T));
    if (bytes > 0 && (region.base() == nullptr || offset > region.length() || bytes > region.length() - offset))
      throw invalid_argument("the shared array \"" + name + "\" holds " + std::to_string(region.length()) +
                             " bytes, too few for " + std::to_string(bytes) + " bytes at offset " +
                             std::to_string(offset));
    region_ = std::move(region);
    offset_ = offset;
    shape_ = std::move(shape);
  }

 private:
  shared_array(shape_type shape, detail::region_fill fill) : shape_(std::move(shape)) {
    std::size_t const bytes = detail::checked_byte_count(shape_, sizeof(T));
    if (bytes > 0) region_ = detail::mapped_region::anonymous(bytes, fill);
  }

  friend struct detail::shared_array_access;

  detail::mapped_region region_;
  std::size_t offset_ = 0;
  shape_type shape_;
  std::shared_ptr<detail::output_journal> journal_;  // of a resumable output
};

namespace detail {
// What map_chunks needs to know that users do not.
struct shared_array_access {
  template <class T>
  static bool holds_stale_data(shared_array<T> const& array) noexcept {
    return array.region_.recycled();
  }
  // The journal of an array from resume_npy, else null.
  template <class T>
  static output_journal* journal(shared_array<T> const& array) noexcept {
    return array.journal_.get();
  }

};
}  // namespace detail

}  // namespace xjob

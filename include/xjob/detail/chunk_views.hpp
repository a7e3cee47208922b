// The two ways map_chunks cuts an array into chunks. A row-major contiguous
// array cut along axis 0 gives contiguous slabs of its own memory; anything
// else gives dense copies of each chunk, written back afterwards. Either way
// the user's function sees an xtensor adaptor over raw memory (chunk_view),
// the fastest thing xtensor can assign to (linear, SIMD), and one whose
// copies share that memory, so a chunk taken by value still writes through.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <fmt/format.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xshape.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xutils.hpp>

#include <xjob/detail/fork_shared.hpp>
#include <xjob/detail/streaming_store.hpp>
#include <xjob/errors.hpp>

namespace xjob::detail {

template <class E>
concept has_strided_data = requires(E& e) {
  e.data();
  e.shape();
  e.strides();
};

// True when `e`'s elements are laid out row-major without gaps, so a range
// along axis 0 is one contiguous block.
template <class E>
[[nodiscard]] bool is_row_major_contiguous(E const& e) {
  if constexpr (!has_strided_data<E const>) {
    return false;
  } else {
    auto const& shape = e.shape();
    auto const& strides = e.strides();
    std::ptrdiff_t expected = 1;
    for (std::size_t d = shape.size(); d-- > 0;) {
      if (shape[d] == 0) return true;
      if (shape[d] != 1 && static_cast<std::ptrdiff_t>(strides[d]) != expected) return false;
      expected *= static_cast<std::ptrdiff_t>(shape[d]);
    }
    return true;
  }
}

template <class E>
[[nodiscard]] auto first_element(E& e) {
  if constexpr (requires { e.data_offset(); }) {
    return e.data() + e.data_offset();
  } else {
    return e.data();
  }
}

// The shape type a chunk adaptor gets: fixed rank if E has one.
template <class E>
using chunk_shape_t = std::conditional_t<xt::get_rank<std::decay_t<E>>::value == SIZE_MAX,
                                         xt::dynamic_shape<std::size_t>,
                                         std::array<std::size_t, xt::get_rank<std::decay_t<E>>::value>>;

// What f's chunks are: an xtensor adaptor over Element* (Element const* for
// inputs) with Shape, not owning its memory.
template <class Element, class Shape>
using chunk_adaptor_t =
    decltype(xt::adapt(std::declval<Element*>(), std::size_t{}, xt::no_ownership(), std::declval<Shape const&>()));

// What an output's memory is when a call starts, which says how each slab
// is readied before f writes it.
enum class output_memory : std::uint8_t {
  in_use,    // written before (its pages are there): written as it is
  cold,      // pages may not exist yet (a new output): each slab is
             // checked and populated in one call (prepare_output_for_writing)
  recycled,  // recycled memory whose old contents must not show through:
             // each slab is zeroed
};

// Whether an output of `bytes` at `first` may be cold: its first, middle or
// last page has no memory yet. Three mincore calls, so that an output in
// use pays no check per slab.
[[nodiscard]] inline bool may_be_cold(void const* first, std::size_t bytes) noexcept {
  if (bytes == 0) return false;
  auto const* byte = static_cast<unsigned char const*>(first);
  return !page_has_memory(byte) || !page_has_memory(byte + bytes / 2) || !page_has_memory(byte + bytes - 1);
}

// Why output elements of type Element cannot travel as bytes.
template <class Element>
[[nodiscard]] error elements_cannot_travel() {
  return error(fmt::format("map_chunks output elements of type {} are not trivially copyable, so they cannot travel "
                           "to workers that share no memory with this one",
                           typeid(Element).name()));
}

// Output chunks as bytes, for workers that share no memory (see
// task_runner::save_outputs): `count` elements at `first`.
template <class Element>
void append_elements(Element const* first, std::size_t count, std::string& bytes) {
  if constexpr (!std::is_trivially_copyable_v<Element>) {
    throw elements_cannot_travel<Element>();
  } else {
    bytes.append(reinterpret_cast<char const*>(first), count * sizeof(Element));
  }
}
template <class Element>
void assign_elements(Element* first, std::size_t count, std::string_view bytes, std::size_t begin, std::size_t end) {
  if constexpr (!std::is_trivially_copyable_v<Element>) {
    throw elements_cannot_travel<Element>();
  } else {
    if (bytes.size() != count * sizeof(Element))
      throw error(fmt::format("the output of slabs {} to {} arrived as {} bytes, not {}", begin, end, bytes.size(),
                              count * sizeof(Element)));
    std::memcpy(static_cast<void*>(first), bytes.data(), bytes.size());
  }
}

// Slabs [begin, end) along axis 0 of a contiguous row-major block.
template <class Element, class Shape>
class contiguous_slabs {
 public:
  // `memory`: what an output's memory is (see output_memory); in_use for
  // an input.
  template <class InputShape>
  contiguous_slabs(Element* data, InputShape const& shape, output_memory memory = output_memory::in_use)
      : data_(data), memory_(memory) {
    shape_ = xtl::make_sequence<Shape>(shape.size(), 0);
    std::copy(shape.begin(), shape.end(), shape_.begin());
    slab_elements_ = 1;
    for (std::size_t d = 1; d < shape_.size(); ++d) slab_elements_ *= shape_[d];
  }

  [[nodiscard]] auto take(std::size_t begin, std::size_t end) const {
    Shape shape = shape_;
    shape[0] = end - begin;
    Element* first = data_ + begin * slab_elements_;
    std::size_t const count = (end - begin) * slab_elements_;
    if constexpr (!std::is_const_v<Element>) {
      std::size_t const bytes = count * sizeof(Element);
      if (memory_ == output_memory::cold) {
        prepare_output_for_writing(static_cast<void*>(first), bytes);
      } else if (in_worker_process()) {
        map_for_writing(first, bytes);
      }
      if (memory_ == output_memory::recycled) std::memset(static_cast<void*>(first), 0, bytes);
    }
    // A prvalue pointer, so the adaptor is a chunk_adaptor_t (over Element*,
    // not Element*&), the type map_chunks checks f against.
    return xt::adapt(static_cast<Element*>(first), count, xt::no_ownership(), shape);
  }

  // The slab is already an adaptor of the array's own memory; f gets a copy
  // of it (copies share the memory), and nothing is written back.
  template <class Slab>
  [[nodiscard]] static Slab view(Slab const& slab) {
    return slab;
  }
  template <class Slab>
  void put(std::size_t, Slab const&) const noexcept {}

  // Slabs [begin, end) as bytes, and back (see append_elements).
  [[nodiscard]] std::size_t byte_count(std::size_t begin, std::size_t end) const noexcept {
    return (end - begin) * slab_elements_ * sizeof(Element);
  }
  // Where they lie, for trivially copyable elements (else empty).
  [[nodiscard]] std::span<std::byte> bytes_in_place(std::size_t begin, std::size_t end) const noexcept {
    if constexpr (std::is_trivially_copyable_v<Element> && !std::is_const_v<Element>) {
      return {reinterpret_cast<std::byte*>(data_ + begin * slab_elements_), byte_count(begin, end)};
    } else {
      return {};
    }
  }
  void save(std::size_t begin, std::size_t end, std::string& bytes) const {
    append_elements(data_ + begin * slab_elements_, (end - begin) * slab_elements_, bytes);
  }
  void load(std::size_t begin, std::size_t end, std::string_view bytes) const {
    assign_elements(data_ + begin * slab_elements_, (end - begin) * slab_elements_, bytes, begin, end);
  }

 private:
  Element* data_;
  Shape shape_;
  std::size_t slab_elements_ = 1;
  output_memory memory_;
};

// The output chunk f gets when no input overlaps the output. Its `=`
// assigns without the temporary xtensor otherwise makes for
// `container = expression` (and then copies into an adaptor's memory, which
// halves the speed of a memory-bound map): it is `xt::noalias(out) = e`, or
// the same with streaming stores when the call chose them (`streaming`, see
// streaming_store.hpp). Safe because the chunk is a fresh view of memory
// nothing else in the call reads; an expression that reads `out` itself
// other than elementwise needs xt::eval, as the README says.
template <class Adaptor>
class output_chunk : public Adaptor {
 public:
  explicit output_chunk(Adaptor&& adaptor, streaming_state* streaming = nullptr)
      : Adaptor(std::move(adaptor)), streaming_(streaming) {}
  using Adaptor::operator=;
  template <class E>
  output_chunk& operator=(xt::xexpression<E> const& e) {
    if (streaming_ != nullptr && !streaming_->stopped.load(std::memory_order_relaxed)) {
      if (assigned_ && streaming_->learn) {
        streaming_->stopped.store(true, std::memory_order_relaxed);
      } else if (stream_assign(static_cast<Adaptor&>(*this), e.derived_cast())) {
        assigned_ = true;
        return *this;
      }
    }
    assigned_ = true;
    xt::noalias(static_cast<Adaptor&>(*this)) = e;
    return *this;
  }

 private:
  streaming_state* streaming_ = nullptr;
  bool assigned_ = false;
};

}  // namespace xjob::detail

namespace xt {
// `xt::noalias(out) = e` on an output chunk: the chunk already assigns
// without a temporary, and xtensor's proxy would return the adaptor base,
// which does not convert back to output_chunk&.
template <class Adaptor>
auto noalias(xjob::detail::output_chunk<Adaptor>& chunk) noexcept {
  return noalias(static_cast<Adaptor&>(chunk));
}
}  // namespace xt

namespace xjob::detail {

// Whether [a, a + a_count) and [b, b + b_count) share an element's bytes.
template <class A, class B>
[[nodiscard]] bool overlaps(A const* a, std::size_t a_count, B const* b, std::size_t b_count) noexcept {
  auto const a_begin = reinterpret_cast<std::uintptr_t>(a);
  auto const b_begin = reinterpret_cast<std::uintptr_t>(b);
  return a_begin < b_begin + b_count * sizeof(B) && b_begin < a_begin + a_count * sizeof(A);
}

// Copies between a strided block and a dense row-major one, dimension by
// dimension. Plain pointer arithmetic on purpose: xtensor 0.24 assigns
// between non-contiguous strided views with equal strides as if they were
// contiguous (has_linear_assign compares strides only), which scrambles
// chunks cut along an inner axis.
template <class From, class To>
void copy_strided(From* from, std::ptrdiff_t const* from_strides, To* to, std::ptrdiff_t const* to_strides,
                  std::size_t const* shape, std::size_t rank) {
  if (rank == 0) {
    *to = *from;
    return;
  }
  if (rank == 1) {
    for (std::size_t i = 0; i < shape[0]; ++i) to[static_cast<std::ptrdiff_t>(i) * to_strides[0]] =
        from[static_cast<std::ptrdiff_t>(i) * from_strides[0]];
    return;
  }
  for (std::size_t i = 0; i < shape[0]; ++i)
    copy_strided(from + static_cast<std::ptrdiff_t>(i) * from_strides[0], from_strides + 1,
                 to + static_cast<std::ptrdiff_t>(i) * to_strides[0], to_strides + 1, shape + 1, rank - 1);
}

// Slabs along any axis of any array with memory, taken as dense copies
// (`Container`, an xtensor or xarray), shown to f as adaptors over the
// copies (so a chunk f takes by value writes into the copy too), and
// written back by put().
template <class Element, class Container>
class copied_slabs {
 public:
  template <class Shape, class Strides>
  copied_slabs(Element* data, Shape const& shape, Strides const& strides, std::size_t axis)
      : data_(data), axis_(axis) {
    shape_.assign(shape.begin(), shape.end());
    strides_.assign(strides.begin(), strides.end());
  }

  [[nodiscard]] Container take(std::size_t begin, std::size_t end) const {
    Container dense = uninitialized(begin, end);
    copy_strided(first(begin), strides_.data(), dense.data(), dense.strides().data(), dense.shape().data(),
                 dense.shape().size());
    return dense;
  }

  [[nodiscard]] static chunk_adaptor_t<Element, typename Container::shape_type> view(Container& dense) {
    return xt::adapt(static_cast<Element*>(dense.data()), dense.size(), xt::no_ownership(), dense.shape());
  }

  void put(std::size_t begin, Container const& dense) const {
    copy_strided(dense.data(), dense.strides().data(), first(begin), strides_.data(), dense.shape().data(),
                 dense.shape().size());
  }

  // Slabs [begin, end) as bytes (row-major), and back.
  [[nodiscard]] std::size_t byte_count(std::size_t begin, std::size_t end) const noexcept {
    std::size_t count = sizeof(Element);
    for (std::size_t d = 0; d < shape_.size(); ++d) count *= d == axis_ ? end - begin : shape_[d];
    return count;
  }
  void save(std::size_t begin, std::size_t end, std::string& bytes) const {
    Container const dense = take(begin, end);
    append_elements(dense.data(), dense.size(), bytes);
  }
  void load(std::size_t begin, std::size_t end, std::string_view bytes) const {
    Container dense = uninitialized(begin, end);
    assign_elements(dense.data(), dense.size(), bytes, begin, end);
    put(begin, dense);
  }

 private:
  // A dense container of slabs [begin, end)'s shape, to be filled.
  [[nodiscard]] Container uninitialized(std::size_t begin, std::size_t end) const {
    auto shape = xtl::make_sequence<typename Container::shape_type>(shape_.size(), 0);
    std::copy(shape_.begin(), shape_.end(), shape.begin());
    shape[axis_] = end - begin;
    return Container(shape);
  }

  [[nodiscard]] Element* first(std::size_t begin) const {
    return data_ + static_cast<std::ptrdiff_t>(begin) * strides_[axis_];
  }

  Element* data_;
  std::size_t axis_;
  xt::dynamic_shape<std::size_t> shape_;
  xt::dynamic_shape<std::ptrdiff_t> strides_;
};

// The dense container a copied chunk of E becomes.
template <class E, class Element>
using dense_chunk_t = std::conditional_t<xt::get_rank<std::decay_t<E>>::value == SIZE_MAX, xt::xarray<Element>,
                                         xt::xtensor<Element, xt::get_rank<std::decay_t<E>>::value>>;

}  // namespace xjob::detail

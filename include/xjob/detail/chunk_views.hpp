// The two ways map_chunks hands a chunk to the user's function. A row-major
// contiguous array cut along axis 0 gives contiguous slabs: they become
// xtensor adaptors over raw memory, the fastest thing xtensor can assign to
// (linear, SIMD). Anything else becomes an xt::strided_view per chunk.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include <xtensor/xadapt.hpp>
#include <xtensor/xshape.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xutils.hpp>

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

// Slabs [begin, end) along axis 0 of a contiguous row-major block.
template <class Element, class Shape>
class contiguous_slabs {
 public:
  // With `clear_first`, each slab is zeroed when taken (recycled memory
  // whose old contents must not show through).
  template <class InputShape>
  contiguous_slabs(Element* data, InputShape const& shape, bool clear_first) : data_(data), clear_first_(clear_first) {
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
      if (clear_first_) std::memset(static_cast<void*>(first), 0, count * sizeof(Element));
    }
    return xt::adapt(first, count, xt::no_ownership(), shape);
  }

 private:
  Element* data_;
  Shape shape_;
  std::size_t slab_elements_ = 1;
  bool clear_first_;
};

[[nodiscard]] inline xt::xstrided_slice_vector slab_slices(std::size_t axis, std::size_t begin, std::size_t end) {
  xt::xstrided_slice_vector slices;
  for (std::size_t d = 0; d < axis; ++d) slices.push_back(xt::all());
  slices.push_back(xt::range(begin, end));
  slices.push_back(xt::ellipsis());
  return slices;
}

// Slabs along any axis of any xtensor expression, as strided views. `E` is
// a reference type (const for inputs) or an owned adaptor.
template <class E>
class strided_slabs {
 public:
  strided_slabs(E expression, std::size_t axis) : expression_(std::forward<E>(expression)), axis_(axis) {}

  [[nodiscard]] auto take(std::size_t begin, std::size_t end) {
    return xt::strided_view(expression_, slab_slices(axis_, begin, end));
  }

 private:
  E expression_;
  std::size_t axis_;
};

}  // namespace xjob::detail

// Streaming (non-temporal) stores for map_chunks' output chunks. An ordinary
// store to a line that is not in the cache first reads the line (read for
// ownership), so y = f(x) over arrays larger than the cache moves 24 bytes
// for every 16 it needs; a streaming store writes the line without reading
// it. xtensor assigns through xsimd batches (load_simd/store_simd); this is
// the same linear loop with the batch written by a streaming store. Only for
// what xtensor itself would assign linearly with SIMD (the expression's
// shape and strides match the chunk's, float or double elements), else the
// caller falls back to xtensor's own assignment.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xtensor/xassign.hpp>
#include <xtensor/xtensor_simd.hpp>

#if defined(__x86_64__) || defined(__i386__)
// Only what the enabled instruction sets need: <immintrin.h> is some 45,000
// lines, which xsimd includes anyway when AVX is on, and SSE2's streaming
// stores and fence are in <emmintrin.h>.
#if defined(__AVX__)
#include <immintrin.h>
#else
#include <emmintrin.h>
#endif
#define XJOB_HAS_STREAMING_STORES 1
#else
#define XJOB_HAS_STREAMING_STORES 0
#endif

namespace xjob::detail {

// What one map_chunks call decided about streaming stores, shared by its
// chunks. `automatic` calls learn: a chunk assigned twice means f reads or
// rewrites its output, which streamed lines (evicted from the cache) would
// make slower, so the call's later chunks use ordinary stores.
struct streaming_state {
  bool learn = false;                 // automatic: stop after a chunk is assigned twice
  std::atomic<bool> stopped = false;  // a chunk was assigned twice (learn only)
};

#if XJOB_HAS_STREAMING_STORES
inline void stream_register(double* p, __m128d r) noexcept { _mm_stream_pd(p, r); }
inline void stream_register(float* p, __m128 r) noexcept { _mm_stream_ps(p, r); }
#if defined(__AVX__)
inline void stream_register(double* p, __m256d r) noexcept { _mm256_stream_pd(p, r); }
inline void stream_register(float* p, __m256 r) noexcept { _mm256_stream_ps(p, r); }
#endif
#if defined(__AVX512F__)
inline void stream_register(double* p, __m512d r) noexcept { _mm512_stream_pd(p, r); }
inline void stream_register(float* p, __m512 r) noexcept { _mm512_stream_ps(p, r); }
#endif

// Makes this thread's streaming stores visible before whatever it does next
// (marking its chunk done): they are weakly ordered, unlike ordinary stores.
inline void fence_streaming_stores() noexcept { _mm_sfence(); }
#else
inline void fence_streaming_stores() noexcept {}
#endif

// Element types streaming stores are written for.
template <class T>
inline constexpr bool streamable_element = XJOB_HAS_STREAMING_STORES &&
                                           (std::is_same_v<T, double> || std::is_same_v<T, float>);

// out = e with streaming stores, if xtensor would assign it linearly with
// SIMD; returns false (having written nothing) otherwise.
template <class Out, class E>
[[nodiscard]] bool stream_assign(Out& out, E const& e) {
  using T = typename Out::value_type;
  using traits = xt::xassign_traits<Out, E>;
  if constexpr (!streamable_element<T> || !traits::simd_assign() ||
                !std::is_same_v<typename traits::requested_value_type, T>) {
    return false;
  } else {
#if XJOB_HAS_STREAMING_STORES
    // As xtensor decides: no operand broadcast (trivial), the same shape,
    // and strides that let one linear index address every operand.
    using index_type = xt::xindex_type_t<typename Out::shape_type>;
    index_type shape = xt::uninitialized_shape<index_type>(e.dimension());
    bool const trivial = e.broadcast_shape(shape, true);
    if (!trivial || shape.size() != out.dimension() || !std::equal(shape.begin(), shape.end(), out.shape().begin()))
      return false;
    if (!xt::detail::is_linear_assign(out, e)) return false;
    if (!(traits::simd_linear_assign() || traits::simd_linear_assign(out, e))) return false;
    using batch = xt_simd::simd_type<T>;
    constexpr std::size_t lanes = batch::size;
    constexpr std::size_t register_bytes = lanes * sizeof(T);
    T* data = out.data();
    std::size_t const size = out.size();
    // Streaming stores of a whole register need its alignment: the head up
    // to it, and the tail after the last whole register, store as usual.
    std::size_t const misaligned = reinterpret_cast<std::uintptr_t>(data) % register_bytes;
    std::size_t head = misaligned == 0 ? 0 : (register_bytes - misaligned) / sizeof(T);
    if (misaligned % sizeof(T) != 0 || head > size) head = size;
    std::size_t const body_end = head + (size - head) / lanes * lanes;
    for (std::size_t i = 0; i < head; ++i) data[i] = e.data_element(i);
    for (std::size_t i = head; i < body_end; i += lanes) {
      batch const values = e.template load_simd<xt::unaligned_mode, T>(i);
      stream_register(data + i, static_cast<typename batch::register_type>(values));
    }
    for (std::size_t i = body_end; i < size; ++i) data[i] = e.data_element(i);
    return true;
#else
    return false;
#endif
  }
}

}  // namespace xjob::detail

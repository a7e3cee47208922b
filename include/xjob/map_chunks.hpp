// parallel::map_chunks: f(in, out) over chunks of an xtensor array or a
// shared_array, cut along one axis, into a new shared_array or a caller's
// output. parallel.hpp declares the calls; this header builds them (it is the
// part of the front end that parses xtensor). Included by <xjob/xjob.hpp>.
//
// What f is given: `in`, the read-only input chunk, as an
// `xjob::chunk_view<T const, N> const&`, and `out`, the matching output
// chunk, bound to an `xjob::chunk_view<U, M>&`: xtensor adaptors with the
// arrays' ranks: N for an xt::xtensor<T, N>, xjob::dynamic_rank for an
// xt::xarray or a shared_array; the new output of map_chunks(x, f) has x's.
// Row-major arrays cut along axis 0 give adaptors over the arrays' own memory
// (no copy; `out = e` assigns without a temporary when out does not overlap
// the input); other axes or strided arrays give adaptors over dense copies of
// each chunk, written back after f returns. Copies of a chunk view share its
// memory, so f may take `out` by value too. f is checked first: one that
// cannot be called so is one compile-time error that names the chunk types.
//   #include <xjob/map_chunks.hpp>
//   auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
//   par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sum(in, {1}); }, sums);
#pragma once

#include <xjob/detail/config.hpp>

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/chunking.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/detail/chunk_views.hpp>
#include <xjob/detail/mapped_region.hpp>
#include <xjob/detail/output_journal.hpp>
#include <xjob/detail/remote_call.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>
#include <xjob/shared_array.hpp>
#include <xjob/shared_array_view.hpp>
#include <xjob/transfer_xtensor.hpp>

namespace xjob {

// The rank of a chunk of an xt::xarray or a shared_array, known at run time.
inline constexpr std::size_t dynamic_rank = SIZE_MAX;

// The type of the chunks map_chunks gives f: an xtensor adaptor of rank N
// over T* (T const* for the input), not owning its memory; copies share it.
//   par.map_chunks(x, [](xjob::chunk_view<double const, 2> const& in, xjob::chunk_view<double, 2>& out) {
//     out = 2.0 * in; });
template <class T, std::size_t N = dynamic_rank>
using chunk_view = detail::chunk_adaptor_t<
    T, std::conditional_t<N == dynamic_rank, xt::dynamic_shape<std::size_t>, std::array<std::size_t, N>>>;

}  // namespace xjob

namespace xjob::detail {

template <class T>
inline constexpr bool is_shared_array_v = false;
template <class T>
inline constexpr bool is_shared_array_v<shared_array<T>> = true;

// shared_arrays take part in map_chunks through their xtensor adaptor;
// everything else as the expression it is.
template <class X>
decltype(auto) as_expression(X&& x) {
  if constexpr (is_shared_array_v<std::remove_cvref_t<X>>) {
    return x.view();
  } else {
    return std::forward<X>(x);
  }
}

// The parts of parallel that map_chunks needs and users do not.
struct parallel_access {
  static void run(parallel const& par, task_runner& runner, std::size_t count, remote_form const* remote = nullptr,
                  std::function<void(batch_range)> on_batch_done = {}, bool batch_done_is_urgent = false) {
    par.run(runner, count, remote, std::move(on_batch_done), batch_done_is_urgent);
  }
  static std::size_t chunk_extent_for(parallel const& par, std::span<std::size_t const> shape, std::size_t axis,
                                      std::size_t element_bytes, chunking const& how,
                                      std::optional<int> auto_workers = std::nullopt) {
    return par.chunk_extent_for(shape, axis, element_bytes, how, auto_workers);
  }
  static auto reduction_runner(parallel const& par, remote_form const* remote) { return par.reduction_runner(remote); }
  template <class T, class Combine>
  static T reduced(T init, Combine const& combine, std::optional<T> root) {
    return parallel::reduced(std::move(init), combine, std::move(root));
  }
  static void check_chunk_shapes(std::span<std::size_t const> input_shape,
                                 std::span<std::size_t const> output_shape, std::size_t axis) {
    parallel::check_chunk_shapes(input_shape, output_shape, axis);
  }
};

// The chunks of a plan that a call runs: every one, or (into a resumable
// output) those its journal does not record as done, task k running chunk
// only[k].
struct chunk_selection {
  std::span<std::size_t const> only;  // empty: every chunk
  [[nodiscard]] std::size_t count(chunk_plan const& plan) const { return only.empty() ? plan.size() : only.size(); }
  [[nodiscard]] std::size_t chunk_of(std::size_t task) const { return only.empty() ? task : only[task]; }
};

// A resumable output's part in a map_chunks call (shared_array::resume_npy):
// the chunks its journal does not record are run, and finished ones are
// handed to the journal as their batches are reported (which writes them
// back to disk in groups before it records them; see output_journal).
struct resumable_output {
  output_journal& journal;

  // The chunks to run; none if the output is complete.
  [[nodiscard]] std::vector<std::size_t> start(chunk_plan const& plan, std::size_t axis) {
    return journal.start(output_plan{axis, plan.chunk_extent()}, plan.size());
  }

  // Tasks `done` of a call over the chunks `pending` finished: one run of
  // neighbouring chunks at a time.
  void chunks_done(std::span<std::size_t const> pending, batch_range done) {
    for (std::size_t task = done.begin; task < done.end;) {
      std::size_t end = task + 1;
      while (end < done.end && pending[end] == pending[end - 1] + 1) ++end;
      journal.chunks_written(pending[task], pending[end - 1] + 1);
      task = end;
    }
  }
};

// The output chunks of tasks as bytes, for workers that share no memory
// (see task_runner::save_outputs); map_chunks has no results.
template <class Outs>
struct chunk_outputs : no_results {
  chunk_plan const* plan;
  chunk_selection selection;
  Outs const* outs;

  void save_outputs(std::size_t begin, std::size_t end, std::string& bytes) const {
    for_each_run(begin, end, [&](chunk const first, chunk const last) { outs->save(first.begin, last.end, bytes); });
  }
  // The outputs of tasks [begin, end), if their chunks are neighbours in a
  // contiguous output (one run).
  [[nodiscard]] std::span<std::byte> outputs_in_place(std::size_t begin, std::size_t end) const {
    if constexpr (requires { outs->bytes_in_place(begin, end); }) {
      if (begin >= end || selection.chunk_of(end - 1) - selection.chunk_of(begin) != end - 1 - begin) return {};
      return outs->bytes_in_place((*plan)[selection.chunk_of(begin)].begin, (*plan)[selection.chunk_of(end - 1)].end);
    } else {
      return {};
    }
  }

  void load_outputs(std::size_t begin, std::size_t end, std::string_view bytes) const {
    // Runs of neighbouring chunks in order, as save_outputs appended them.
    std::size_t at = 0;
    for_each_run(begin, end, [&](chunk const first, chunk const last) {
      std::size_t const size = outs->byte_count(first.begin, last.end);
      if (at + size > bytes.size())
        throw error(fmt::format("the outputs of tasks {} to {} arrived short ({} bytes)", begin, end - 1, bytes.size()));
      outs->load(first.begin, last.end, bytes.substr(at, size));
      at += size;
    });
    if (at != bytes.size())
      throw error(fmt::format("the outputs of tasks {} to {} arrived with {} bytes too many", begin, end - 1,
                              bytes.size() - at));
  }

 private:
  // Calls visit(first, last) for each run of tasks in [begin, end) whose
  // chunks are neighbours (all of them, unless a resumed call skips some).
  template <class Visit>
  void for_each_run(std::size_t begin, std::size_t end, Visit visit) const {
    for (std::size_t task = begin; task < end;) {
      std::size_t last = task;
      while (last + 1 < end && selection.chunk_of(last + 1) == selection.chunk_of(last) + 1) ++last;
      visit((*plan)[selection.chunk_of(task)], (*plan)[selection.chunk_of(last)]);
      task = last + 1;
    }
  }
};

// One task per chunk: f(in, out), or f(in, out, chunk_info), on views of
// the chunk, then the output chunk is put back (a no-op for chunks of the
// output's own memory). `wrap` turns the output view into what f gets (see
// output_chunk). `run(runner, count)` runs the tasks: on the parallel object
// in the caller, on the worker's loop in a warm worker process.
template <class Run, class Ins, class Outs, class F, class Wrap>
void run_chunks(Run const& run, chunk_plan const& plan, chunk_selection selection, std::size_t axis, Ins& ins,
                Outs& outs, F const& f, Wrap wrap, bool streaming = false) {
  task_loop loop([&](std::size_t task) {
    std::size_t const i = selection.chunk_of(task);
    chunk const c = plan[i];
    auto in_held = ins.take(c.begin, c.end);
    auto out_held = outs.take(c.begin, c.end);
    auto const in_chunk = ins.view(in_held);
    auto out_chunk = wrap(outs.view(out_held));
    if constexpr (std::invocable<F const&, decltype(in_chunk) const&, decltype(out_chunk)&, chunk_info const&>)
      f(in_chunk, out_chunk, chunk_info{.index = i, .offset = c.begin, .extent = c.extent(), .axis = axis});
    else
      f(in_chunk, out_chunk);
    // Before the chunk counts as done (a copy of out_chunk that f made may
    // have streamed too, so whether this one did tells nothing).
    if (streaming) fence_streaming_stores();
    outs.put(c.begin, out_held);
  }, chunk_outputs<Outs>{{}, &plan, selection, &outs});
  run(loop, selection.count(plan));
}

// Checked before anything is instantiated with f, so that a callable of the
// wrong shape gives this one error, with the chunk types in its "with" line,
// instead of pages of xtensor's.
template <class F, class InChunk, class OutChunk>
constexpr bool chunk_callable = (std::invocable<F const&, InChunk const&, OutChunk&> &&
                                 std::invocable<F const&, InChunk const&, output_chunk<OutChunk>&>) ||
                                (std::invocable<F const&, InChunk const&, OutChunk&, chunk_info const&> &&
                                 std::invocable<F const&, InChunk const&, output_chunk<OutChunk>&, chunk_info const&>);

template <class F, class InChunk, class OutChunk>
void refuse_chunk_callable() {
  static_assert(chunk_callable<F, InChunk, OutChunk>,
                "xjob: map_chunks calls f(in, out) with `in` an xjob::chunk_view<T const, N> const& (a read-only "
                "xtensor adaptor of the input chunk) and `out` an xjob::chunk_view<U, M>& (a writable xtensor "
                "adaptor of the output chunk; InChunk and OutChunk below are their exact types), and an "
                "xjob::chunk_info const& third if f takes one, and f cannot be called so. Write f as "
                "[](auto const& in, auto&& out) { out = ...; }, or take those types "
                "(an xt::xtensor<T, N>& parameter cannot bind to a chunk).");
}

// Whether a call writing `output_bytes` of contiguous output, none of it
// overlapping the input, uses streaming stores (see streaming_store.hpp):
// nullopt for ordinary stores, else whether it learns to stop (automatic).
// Automatic streams an output at least as large as the last-level cache:
// a smaller one may still be in the cache when it is next read, and
// streaming would evict it. (Nor a cold output: see map_chunks_into.)
template <class OutElement>
[[nodiscard]] std::optional<bool> streaming_for(parallel const& par, std::size_t output_bytes) {
  if constexpr (!streamable_element<std::remove_const_t<OutElement>>) {
    return std::nullopt;
  } else {
    switch (par.options().streaming.value_or(streaming_stores::automatic)) {
      case streaming_stores::on:
        return false;
      case streaming_stores::off:
        return std::nullopt;
      case streaming_stores::automatic:
        break;
    }
    if (output_bytes < last_level_cache_bytes()) return std::nullopt;
    return true;
  }
}

// Cuts `in` and `out` into the chunks of `plan` and runs f on each pair
// through `run` (see run_chunks). `streaming`: see streaming_for.
template <class Run, class In, class F, class Out, class InElement, class OutElement>
void run_chunk_plan(Run const& run, chunk_plan const& plan, chunk_selection selection, In const& in, F const& f,
                    Out&& out,
                    InElement* in_first, OutElement* out_first, std::size_t axis, output_memory memory,
                    std::optional<bool> streaming_choice) {
  auto const& in_shape = in.shape();
  auto const& out_shape = out.shape();
  auto as_is = [](auto&& chunk) { return std::move(chunk); };
  auto no_alias = [](auto&& chunk) { return output_chunk(std::move(chunk)); };
  if (axis == 0 && is_row_major_contiguous(in) && is_row_major_contiguous(out)) {
    contiguous_slabs<InElement, chunk_shape_t<In>> ins(in_first, in_shape);
    contiguous_slabs<OutElement, chunk_shape_t<Out>> outs(out_first, out_shape, memory);
    if (overlaps(in_first, in.size(), out_first, out.size())) {
      run_chunks(run, plan, selection, axis, ins, outs, f, as_is);
    } else if (streaming_choice) {
      streaming_state streaming;
      streaming.learn = *streaming_choice;
      run_chunks(
          run, plan, selection, axis, ins, outs, f,
          [&streaming](auto&& chunk) { return output_chunk(std::move(chunk), &streaming); }, true);
    } else {
      run_chunks(run, plan, selection, axis, ins, outs, f, no_alias);
    }
  } else {
    // f's chunks are copies here, which never overlap each other.
    using in_value = std::remove_const_t<InElement>;
    if (memory == output_memory::recycled) std::fill(out.begin(), out.end(), OutElement{});
    copied_slabs<in_value const, dense_chunk_t<In, in_value>> ins(in_first, in_shape, in.strides(), axis);
    copied_slabs<OutElement, dense_chunk_t<Out, OutElement>> outs(out_first, out_shape, out.strides(), axis);
    run_chunks(run, plan, selection, axis, ins, outs, f, no_alias);
  }
}

// Warm worker processes (see task_runner.hpp's remote_form): an array of
// the call as a worker finds it, in one of the call's shared mappings.
struct remote_array {
  std::uint32_t mapping = 0;
  std::uint64_t offset = 0;  // of the first element, in bytes
  std::vector<std::size_t> shape;
  std::vector<std::ptrdiff_t> strides;  // in elements
};

// The bytes an array with memory spans from its first element, or nothing
// if a stride is negative (such views are copied, not mapped).
template <class E, class Element>
[[nodiscard]] std::optional<std::size_t> array_span_bytes(E const& e) {
  auto const& shape = e.shape();
  auto const& strides = e.strides();
  std::size_t last = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    if (static_cast<std::ptrdiff_t>(strides[d]) < 0) return std::nullopt;
    last += (shape[d] - 1) * static_cast<std::size_t>(strides[d]);
  }
  return (last + 1) * sizeof(Element);
}

// The shared mapping holding all of `e`'s elements, if there is one.
template <class E, class Element>
[[nodiscard]] std::optional<shared_mapping_location> find_array_mapping(E const& e, Element* first) {
  std::optional<std::size_t> const bytes = array_span_bytes<E, Element>(e);
  if (!bytes) return std::nullopt;
  return find_shared_mapping(first, *bytes);
}

template <class E>
[[nodiscard]] remote_array describe_remote_array(E const& e, shared_mapping_location const& where,
                                                 std::uint32_t mapping) {
  auto const& shape = e.shape();
  auto const& strides = e.strides();
  return {mapping, static_cast<std::uint64_t>(where.offset), std::vector<std::size_t>(shape.begin(), shape.end()),
          std::vector<std::ptrdiff_t>(strides.begin(), strides.end())};
}

// An xtensor adaptor of Shape's rank over an array a worker mapped.
template <class Element, class Shape>
[[nodiscard]] auto adapt_remote_array(std::span<std::byte* const> mappings, remote_array const& a) {
  bool rank_fits = true;
  if constexpr (!std::is_same_v<Shape, xt::dynamic_shape<std::size_t>>) rank_fits = std::tuple_size<Shape>::value == a.shape.size();
  if (a.mapping >= mappings.size() || a.shape.size() != a.strides.size() || !rank_fits)
    throw error("a map_chunks call reached a worker process with a malformed array description");
  Shape shape = xtl::make_sequence<Shape>(a.shape.size(), 0);
  std::copy(a.shape.begin(), a.shape.end(), shape.begin());
  auto strides = xtl::make_sequence<xt::get_strides_t<Shape>>(a.strides.size(), 0);
  std::copy(a.strides.begin(), a.strides.end(), strides.begin());
  std::size_t span = 1;
  for (std::size_t d = 0; d < a.shape.size(); ++d)
    span += a.shape[d] == 0 ? 0 : (a.shape[d] - 1) * static_cast<std::size_t>(a.strides[d]);
  auto* first = reinterpret_cast<Element*>(mappings[a.mapping] + a.offset);
  return xt::adapt(first, span, xt::no_ownership(), shape, strides);
}

// What a warm worker runs for map_chunks with a callable F without
// captures: the same chunk plan over the same arrays, mapped there.
template <class F, class InElement, class OutElement, class InShape, class OutShape>
void run_remote_chunks(std::string_view payload, std::span<std::byte* const> mappings, remote_loop& loop) {
  remote_array in_array;
  remote_array out_array;
  std::uint64_t axis = 0;
  std::uint64_t extent = 0;
  std::uint64_t chunk_extent = 0;
  std::uint8_t memory = 0;
  std::int8_t streaming = -1;
  std::vector<std::size_t> only;
  decode_values(payload, "a map_chunks call", in_array.mapping, in_array.offset, in_array.shape, in_array.strides,
                out_array.mapping, out_array.offset, out_array.shape, out_array.strides, axis, extent, chunk_extent,
                memory, streaming, only);
  auto in = adapt_remote_array<InElement, InShape>(mappings, in_array);
  auto out = adapt_remote_array<OutElement, OutShape>(mappings, out_array);
  chunk_plan const plan(static_cast<std::size_t>(extent), static_cast<std::size_t>(chunk_extent));
  F const f{};
  run_chunk_plan([&loop](task_runner& runner, std::size_t count) { loop.run(runner, count); }, plan,
                 chunk_selection{only}, in, f, out,
                 static_cast<InElement*>(in.data()), static_cast<OutElement*>(out.data()),
                 static_cast<std::size_t>(axis), static_cast<output_memory>(memory),
                 streaming < 0 ? std::nullopt : std::optional<bool>(streaming != 0));
}

// The remote form of a map_chunks call whose input is in shared memory at
// `in_at`, or nothing if its output is not in shared memory a worker can map.
template <class F, class In, class Out, class InElement, class OutElement>
[[nodiscard]] std::optional<remote_form> remote_chunks_form(In const& in, Out const& out,
                                                            shared_mapping_location const& in_at,
                                                            OutElement* out_first, std::size_t axis,
                                                            chunk_plan const& plan, chunk_selection selection,
                                                            output_memory memory, std::optional<bool> streaming) {
  std::optional<shared_mapping_location> const out_at = find_array_mapping(out, out_first);
  if (!out_at || !out_at->mapping.writable) return std::nullopt;
  remote_form form;
  form.entry = &run_remote_chunks<F, InElement, OutElement, chunk_shape_t<In>, chunk_shape_t<Out>>;
  form.mappings.push_back(in_at.mapping);
  std::uint32_t out_mapping = 0;
  if (out_at->mapping.id != in_at.mapping.id) {
    form.mappings.push_back(out_at->mapping);
    out_mapping = 1;
  }
  remote_array const in_array = describe_remote_array(in, in_at, 0);
  remote_array const out_array = describe_remote_array(out, *out_at, out_mapping);
  encode_values(form.payload, in_array.mapping, in_array.offset, in_array.shape, in_array.strides, out_array.mapping,
                out_array.offset, out_array.shape, out_array.strides, static_cast<std::uint64_t>(axis),
                static_cast<std::uint64_t>(plan.extent()), static_cast<std::uint64_t>(plan.chunk_extent()),
                static_cast<std::uint8_t>(memory), static_cast<std::int8_t>(!streaming ? -1 : *streaming ? 1 : 0),
                std::vector<std::size_t>(selection.only.begin(), selection.only.end()));
  return form;
}

// Calls k(view), `view` an adaptor of in's rank over a copy of `in` in a
// new shared_array: warm worker processes see only shared memory, so an
// input elsewhere is copied there once for the call (joblib memory-maps
// large arguments likewise), never sent per task.
template <class Element, class In, class K>
decltype(auto) with_staged_input(In const& in, std::vector<std::size_t> const& shape, K&& k) {
  shared_array<std::remove_const_t<Element>> staged(shape, uninitialized);
  constexpr std::size_t rank = xt::get_rank<std::remove_cvref_t<In>>::value;
  if constexpr (rank == dynamic_rank) {
    std::copy(in.begin(), in.end(), staged.view().begin());
    return k(std::as_const(staged).view());
  } else {
    std::copy(in.begin(), in.end(), staged.template view<rank>().begin());
    return k(std::as_const(staged).template view<rank>());
  }
}

// `resume`: the journal of a resumable output (then `out` is its view).
template <class In, class F, class Out>
void map_chunks_into(parallel const& par, In const& in, F const& f, Out&& out, chunking const& how,
                     bool clear_output, resumable_output* resume = nullptr) {
  static_assert(has_strided_data<std::remove_reference_t<In> const> && has_strided_data<std::remove_reference_t<Out>>,
                "map_chunks needs arrays with memory (an xtensor container, adaptor or strided view, or a "
                "shared_array); evaluate a lazy expression into a container first");
  auto const* in_first = first_element(in);
  auto* out_first = first_element(out);
  using in_element_type = std::remove_pointer_t<decltype(in_first)>;
  using out_element_type = std::remove_pointer_t<decltype(out_first)>;
  using in_chunk = chunk_adaptor_t<in_element_type, chunk_shape_t<In>>;
  using out_chunk = chunk_adaptor_t<out_element_type, chunk_shape_t<Out>>;
  if constexpr (!chunk_callable<F, in_chunk, out_chunk>) {
    refuse_chunk_callable<F, in_chunk, out_chunk>();
  } else {
    auto const& in_shape = in.shape();
    auto const& out_shape = out.shape();
    std::vector<std::size_t> const input_shape(in_shape.begin(), in_shape.end());
    std::vector<std::size_t> const output_shape(out_shape.begin(), out_shape.end());
    parallel_access::check_chunk_shapes(input_shape, output_shape, how.axis);
    chunk_plan const plan(input_shape[how.axis], parallel_access::chunk_extent_for(par, input_shape, how.axis,
                                                                                   sizeof(in_element_type), how));
    if (plan.size() == 0) return;
    std::vector<std::size_t> pending;
    std::function<void(batch_range)> on_done;
    if (resume) {
      pending = resume->start(plan, how.axis);
      if (pending.empty()) return;
      on_done = [&](batch_range done) { resume->chunks_done(pending, done); };
    }
    chunk_selection const selection{pending};
    std::size_t const out_bytes = out.size() * sizeof(out_element_type);
    output_memory const memory = clear_output                         ? output_memory::recycled
                                 : may_be_cold(out_first, out_bytes) ? output_memory::cold
                                                                     : output_memory::in_use;
    std::optional<bool> streaming = streaming_for<out_element_type>(par, out_bytes);
    // Automatic does not stream a cold output: each slab is populated just
    // before f writes it (prepare_output_for_writing), which leaves its
    // zeroed lines in the cache, where ordinary stores hit and streaming
    // ones would write each line to memory a second time.
    if (streaming == true && memory == output_memory::cold) streaming.reset();
    auto run_on = [&](remote_form const* remote) {
      return [&par, remote, &on_done](task_runner& runner, std::size_t count) {
        parallel_access::run(par, runner, count, remote, on_done, true);
      };
    };
    if constexpr (is_stateless_callable_v<F>) {
      if (par.reuses_workers()) {
        std::optional<shared_mapping_location> const in_at = find_array_mapping(in, in_first);
        if (!in_at) {
          with_staged_input<in_element_type>(in, input_shape, [&](auto const& staged) {
            map_chunks_into(par, staged, f, std::forward<Out>(out), how, clear_output, resume);
          });
          return;
        }
        if (std::optional<remote_form> remote = remote_chunks_form<F, In, Out, in_element_type>(
                in, out, *in_at, out_first, how.axis, plan, selection, memory, streaming)) {
          run_chunk_plan(run_on(&*remote), plan, selection, in, f, std::forward<Out>(out), in_first, out_first,
                         how.axis, memory, streaming);
          return;
        }
      }
    }
    run_chunk_plan(run_on(nullptr), plan, selection, in, f, std::forward<Out>(out), in_first, out_first, how.axis,
                   memory, streaming);
  }
}

// parallel::map_chunks(input, f, how): into a new zero-initialised
// shared_array of input's shape and element type, which is returned.
template <class Input, class F>
[[nodiscard]] auto run_map_chunks(map_chunks_hook, parallel const& par, Input const& input, F const& f,
                                  chunking const& how) {
  decltype(auto) in = as_expression(input);
  using T = std::remove_cv_t<typename std::remove_cvref_t<decltype(in)>::value_type>;
  auto const& in_shape = in.shape();
  shared_array<T> output(std::vector<std::size_t>(in_shape.begin(), in_shape.end()), uninitialized);
  bool const stale = shared_array_access::holds_stale_data(output);
  // The new output's chunks have the input's rank, fixed where it is.
  constexpr std::size_t rank = xt::get_rank<std::remove_cvref_t<decltype(in)>>::value;
  if constexpr (rank == dynamic_rank) {
    map_chunks_into(par, in, f, output.view(), how, stale);
  } else {
    map_chunks_into(par, in, f, output.template view<rank>(), how, stale);
  }
  return output;
}

// parallel::map_chunks(input, f, output, how): into a caller's shared_array
// (a .npy-backed one is committed when the call succeeds) or writable
// xtensor container. With worker processes, an output that is not a
// shared_array is written through a shared copy (copied in before, and back
// after the call).
template <class Input, class F, class Output>
void run_map_chunks_into(map_chunks_hook, parallel const& par, Input const& input, F const& f, Output&& output,
                         chunking const& how) {
  decltype(auto) in = as_expression(input);
  if constexpr (is_shared_array_v<std::remove_cvref_t<Output>>) {
    if (output_journal* journal = shared_array_access::journal(output)) {
      if (par.capabilities().spans_machines)
        throw invalid_argument(fmt::format(
            "map_chunks: a resumable output (resume_npy) cannot be written by backend \"{}\", whose tasks run on "
            "several machines: every rank would keep its own journal of the same file. Write it with a backend of "
            "one machine, or into a new output (create_npy)",
            par.backend_name()));
      resumable_output resume{*journal};
      // An automatic chunk size follows the unfinished output's plan, so a
      // rerun with another n_jobs or on another machine resumes it.
      chunking adopted = how;
      std::optional<output_plan> const recorded = journal->plan();
      if (!adopted.size && !par.options().chunk_size && recorded && recorded->axis == how.axis)
        adopted.size = recorded->chunk_extent;
      try {
        map_chunks_into(par, in, f, output.view(), adopted, false, &resume);
      } catch (...) {
        // A failed or stopped call keeps what it finished for the rerun
        // (the commit makes a successful one durable whole).
        journal->flush_quietly();
        throw;
      }
    } else {
      map_chunks_into(par, in, f, output.view(), how, false);
    }
    output.commit();
  } else if (par.capabilities().outputs_need_shared_memory) {
    auto const& out_shape = output.shape();
    shared_array<std::remove_cv_t<typename std::remove_cvref_t<Output>::value_type>> staging(
        std::vector<std::size_t>(out_shape.begin(), out_shape.end()), uninitialized);
    std::copy(output.begin(), output.end(), staging.begin());
    map_chunks_into(par, in, f, staging.view(), how, false);
    std::copy(staging.begin(), staging.end(), output.begin());
  } else {
    map_chunks_into(par, in, f, output, how, false);
  }
}

}  // namespace xjob::detail

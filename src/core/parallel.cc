#include <xjob/parallel.hpp>

#include <fmt/format.h>

#include <xjob/detail/shape.hpp>
#include <xjob/errors.hpp>

namespace xjob {

parallel::parallel() : parallel(parallel_options{}) {}

parallel::parallel(int n_jobs) : parallel(parallel_options{.n_jobs = n_jobs}) {}

namespace {

// What the backend is made with; the process settings are set only for
// process backends (see resolve_options), the others keep the defaults.
backend_settings settings_of(parallel_options const& options) {
  backend_settings settings{.n_jobs = *options.n_jobs,
                            .retries = options.retries.value_or(0),
                            .task_timeout = options.task_timeout,
                            .call_timeout = options.call_timeout};
  if (options.start_method) settings.start_method = *options.start_method;
  if (options.reuse_workers) settings.reuse_workers = *options.reuse_workers;
  if (options.idle_timeout) settings.idle_timeout = *options.idle_timeout;
  return settings;
}

}  // namespace

parallel::parallel(parallel_options options)
    : options_(resolve_options(options)),
      backend_(make_backend(options_.backend, settings_of(options_))),
      capabilities_(backend_->capabilities()) {}

std::unique_ptr<batch_call> parallel::make_call(detail::task_runner& runner, std::size_t count,
                                                std::function<void(batch_range)> on_batch_done,
                                                detail::remote_form const* remote, bool batch_done_is_urgent) const {
  batch_call::settings settings;
  settings.workers = *options_.n_jobs;
  settings.batch_size = options_.batch_size;
  settings.target_batch_duration = options_.target_batch_duration;
  settings.verbose = options_.verbose;
  settings.verbose_name = fmt::format("parallel(n_jobs={})", *options_.n_jobs);
  settings.on_progress = options_.on_progress;
  settings.on_batch_done = std::move(on_batch_done);
  settings.batch_done_is_urgent = batch_done_is_urgent;
  settings.remote = remote;
  settings.stop = options_.stop;
  return std::make_unique<batch_call>(runner, count, std::move(settings));
}

void parallel::execute(batch_call& call) const {
  call.start(options_.backend);
  try {
    // A call whose stop was requested before it began starts no worker;
    // a backend spanning machines still takes part in the call's collective
    // steps, which every rank must reach (it then runs no task here).
    if (call.task_count() > 0 && (!call.cancelled() || capabilities_.spans_machines)) backend_->run(call);
  } catch (...) {
    call.finish();  // the backend's own failure (a crashed worker, a timeout)
    throw;
  }
  call.finish();
  call.rethrow_if_failed();
}

void parallel::run(detail::task_runner& runner, std::size_t count, detail::remote_form const* remote,
                   std::function<void(batch_range)> on_batch_done, bool batch_done_is_urgent) const {
  std::unique_ptr<batch_call> call =
      make_call(runner, count, std::move(on_batch_done), remote, batch_done_is_urgent);
  execute(*call);
}

std::size_t parallel::chunk_extent_for(std::span<std::size_t const> shape, std::size_t axis,
                                       std::size_t element_bytes, chunking const& how,
                                       std::optional<int> auto_workers) const {
  if (how.size) {
    if (*how.size == 0) throw invalid_argument("chunk size must be at least 1, got 0");
    return *how.size;
  }
  if (options_.chunk_size) return *options_.chunk_size;
  return auto_chunk_extent(shape, axis, element_bytes, auto_workers.value_or(*options_.n_jobs));
}

void parallel::check_chunk_shapes(std::span<std::size_t const> input_shape,
                                  std::span<std::size_t const> output_shape, std::size_t axis) {
  if (axis >= input_shape.size())
    throw invalid_argument(fmt::format("map_chunks: axis {} is out of range for an input of shape {}", axis,
                                       detail::format_shape(input_shape)));
  if (axis >= output_shape.size() || output_shape[axis] != input_shape[axis])
    throw invalid_argument(fmt::format(
        "map_chunks: output shape {} does not match input shape {} along axis {} (the extents there must be equal)",
        detail::format_shape(output_shape), detail::format_shape(input_shape), axis));
}

}  // namespace xjob

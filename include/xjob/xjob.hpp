// The umbrella header: everything a user of xjob needs.
//   #include <xjob/xjob.hpp>
//   auto squares = xjob::parallel(2).map([](int i) { return i * i; }, std::views::iota(0, 20));
#pragma once

#include <xjob/detail/config.hpp>

#include <xjob/backend.hpp>
#include <xjob/backend_author.hpp>
#include <xjob/batch_call.hpp>
#include <xjob/batching_policy.hpp>
#include <xjob/call_future.hpp>
#include <xjob/cancellation.hpp>
#include <xjob/chunking.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/delayed.hpp>
#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/ipc.hpp>
#include <xjob/map_chunks.hpp>
#include <xjob/parallel.hpp>
#include <xjob/parallel_config.hpp>
#include <xjob/parallel_options.hpp>
#include <xjob/process.hpp>
#include <xjob/process_pool.hpp>
#include <xjob/process_workers.hpp>
#include <xjob/random_stream.hpp>
#include <xjob/reduce_chunks.hpp>
#include <xjob/results.hpp>
#include <xjob/shared_array.hpp>
#include <xjob/shared_array_view.hpp>
#include <xjob/start_method.hpp>
#include <xjob/transfer.hpp>
#include <xjob/transfer_int128.hpp>
#include <xjob/transfer_xtensor.hpp>
#include <xjob/version.hpp>
#include <xjob/worker.hpp>

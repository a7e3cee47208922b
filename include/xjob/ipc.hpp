// Process-shared IPC primitives, like Python's multiprocessing Lock,
// Semaphore, Queue, Pipe, Value and shared_memory.SharedMemory: each lives in
// a memfd (no file, nothing in /dev/shm), works across fork() as is, and
// reaches processes that were not forked from its creator by name.
//   #include <xjob/ipc.hpp>
//   xjob::ipc::queue<std::string> q(100);
//   xjob::ipc::lock m;
//   xjob::ipc::semaphore slots(2);
//   auto [a, b] = xjob::ipc::make_pipe<int>();
#pragma once

#include <xjob/detail/config.hpp>

#include <xjob/ipc/lock.hpp>
#include <xjob/ipc/pipe.hpp>
#include <xjob/ipc/queue.hpp>
#include <xjob/ipc/semaphore.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/ipc/shared_value.hpp>

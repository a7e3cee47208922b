// Frames on a worker's channel (a connected AF_UNIX SOCK_STREAM socket): a
// fixed header, then the payload, and descriptors riding along with the
// header (SCM_RIGHTS). One codec for every process stack of xjob.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/core/fd.hpp"

namespace xjob::detail::process {

// The most descriptors one frame carries.
inline constexpr std::size_t max_frame_fds = 16;

struct frame_header {
  std::uint32_t kind = 0;
  std::uint32_t fd_count = 0;
  std::uint64_t bytes = 0;
};

// Writes all of `bytes` to a socket (no SIGPIPE); false if the peer is gone.
[[nodiscard]] bool send_all(int socket, char const* bytes, std::size_t size) noexcept;
// Reads exactly `size` bytes; false at the end of the stream or on an error.
[[nodiscard]] bool receive_all(int socket, char* bytes, std::size_t size) noexcept;

// One sendmsg of `parts` with `fds` attached (SCM_RIGHTS, copies; at most
// max_frame_fds): what sendmsg returns, EINTR retried. No SIGPIPE.
[[nodiscard]] ssize_t send_with_fds(int socket, std::span<iovec const> parts, std::span<int const> fds) noexcept;

// One recvmsg into `bytes`; the descriptors it carried are appended to
// `fds` (close-on-exec, none on 0-2). Returns what recvmsg returns, EINTR
// retried; `cut` is set if descriptors (MSG_CTRUNC) or a datagram's bytes
// (MSG_TRUNC) were cut off. Throws std::bad_alloc.
[[nodiscard]] ssize_t receive_with_fds(int socket, void* bytes, std::size_t size, std::vector<unique_fd>& fds,
                                       bool& cut);

// Sends one frame with `fds` attached (copies; the caller keeps its own).
// False if the other end is gone or the socket failed. No SIGPIPE.
[[nodiscard]] bool send_frame(int socket, std::uint32_t kind, std::string_view payload,
                              std::span<int const> fds = {}) noexcept;

// Receives one frame: its kind, payload and descriptors (close-on-exec,
// none on 0-2). False at the end of the stream, on an error, or on a frame
// that is malformed (more descriptors than announced, a payload over
// `max_bytes`): the channel is then of no further use.
[[nodiscard]] bool receive_frame(int socket, std::uint32_t& kind, std::string& payload, std::vector<unique_fd>& fds,
                                 std::uint64_t max_bytes = std::uint64_t(1) << 36);

// The one failure record of every process stack (the processes backend's
// workers, process_pool's workers, xjob::process's child): which task
// failed (its index in the call; in a pool, its position in its chunk, or
// no_task), the exception's type name, and its message. Encoded as the task
// and the type name's length (8 bytes each), then the two texts.
struct failure_record {
  static constexpr std::uint64_t no_task = UINT64_MAX;
  std::uint64_t task = no_task;
  std::string type_name;
  std::string message;
};

// Appends the encoding of `failure` to `bytes`. Throws std::bad_alloc.
void encode_failure(std::string& bytes, failure_record const& failure);
[[nodiscard]] std::string encode_failure(failure_record const& failure);

// The record `bytes` holds. Empty bytes (a worker that ran out of memory
// describing its failure) are an "unknown exception"; throws xjob::error
// naming `what` for anything else that is not one record.
[[nodiscard]] failure_record decode_failure(std::string_view bytes, std::string_view what);

// Whether a whole frame waits on `socket` (its header and payload are all
// queued), so that receive_frame cannot block. For reading what a dead
// worker sent: a frame it died in the middle of never completes, and a
// grandchild of the worker holding the socket would keep the read waiting.
[[nodiscard]] bool whole_frame_waiting(int socket) noexcept;

// Makes a receive on `socket` give up (receive_frame returns false) when a
// frame stalls `seconds` in the middle: a live sender writes a frame
// without pausing, so a stall means it is stopped or died mid-frame while
// a grandchild holds the socket. Returns false if the option cannot be set.
bool limit_frame_stalls(int socket, int seconds) noexcept;

}  // namespace xjob::detail::process

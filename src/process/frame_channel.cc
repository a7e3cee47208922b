#include "frame_channel.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob::detail::process {

bool send_all(int socket, char const* at, std::size_t size) noexcept {
  while (size > 0) {
    ssize_t const written = send(socket, at, size, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    at += written;
    size -= static_cast<std::size_t>(written);
  }
  return true;
}

bool receive_all(int socket, char* at, std::size_t size) noexcept {
  while (size > 0) {
    ssize_t const got = read(socket, at, size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    at += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

ssize_t send_with_fds(int socket, std::span<iovec const> parts, std::span<int const> fds) noexcept {
  if (fds.size() > max_frame_fds) {
    errno = EINVAL;
    return -1;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_frame_fds)] = {};
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(parts.data());
  message.msg_iovlen = parts.size();
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* attached = CMSG_FIRSTHDR(&message);
    attached->cmsg_level = SOL_SOCKET;
    attached->cmsg_type = SCM_RIGHTS;
    attached->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(attached), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent = 0;
  while ((sent = sendmsg(socket, &message, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return sent;
}

ssize_t receive_with_fds(int socket, void* bytes, std::size_t size, std::vector<unique_fd>& fds, bool& cut) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_frame_fds)];
  iovec part{bytes, size};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t got = 0;
  while ((got = recvmsg(socket, &message, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (got < 0) return got;
  for (cmsghdr* attached = CMSG_FIRSTHDR(&message); attached != nullptr;
       attached = CMSG_NXTHDR(&message, attached)) {
    if (attached->cmsg_level != SOL_SOCKET || attached->cmsg_type != SCM_RIGHTS) continue;
    std::size_t const count = (attached->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(attached) + i * sizeof(int), sizeof fd);
      unique_fd owned(move_above_stdio(fd));
      fds.push_back(std::move(owned));
    }
  }
  cut = (message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
  return got;
}

bool send_frame(int socket, std::uint32_t kind, std::string_view payload, std::span<int const> fds) noexcept {
  if (fds.size() > max_frame_fds) return false;
  frame_header const header{kind, static_cast<std::uint32_t>(fds.size()), payload.size()};
  // Header and payload in one message: a worker blocked on read wakes once,
  // and the descriptors arrive with the header's first byte.
  iovec const parts[2] = {{const_cast<frame_header*>(&header), sizeof header},
                          {const_cast<char*>(payload.data()), payload.size()}};
  ssize_t const sent = send_with_fds(socket, std::span(parts, payload.empty() ? 1 : 2), fds);
  if (sent < 0) return false;
  // The rest, if the socket took only part (the descriptors went with it).
  std::size_t done = static_cast<std::size_t>(sent);
  if (done < sizeof header) {
    if (!send_all(socket, reinterpret_cast<char const*>(&header) + done, sizeof header - done)) return false;
    done = sizeof header;
  }
  std::size_t const payload_done = done - sizeof header;
  return send_all(socket, payload.data() + payload_done, payload.size() - payload_done);
}

bool receive_frame(int socket, std::uint32_t& kind, std::string& payload, std::vector<unique_fd>& fds,
                   std::uint64_t max_bytes) {
  fds.clear();
  frame_header header;
  bool cut = false;
  ssize_t const got = receive_with_fds(socket, &header, sizeof header, fds, cut);
  if (got <= 0 || cut) return false;
  if (!receive_all(socket, reinterpret_cast<char*>(&header) + got, sizeof header - static_cast<std::size_t>(got)))
    return false;
  if (header.fd_count != fds.size() || header.bytes > max_bytes) return false;
  kind = header.kind;
  payload.resize(static_cast<std::size_t>(header.bytes));
  return receive_all(socket, payload.data(), payload.size());
}

bool whole_frame_waiting(int socket) noexcept {
  frame_header header;
  ssize_t got = 0;
  while ((got = recv(socket, &header, sizeof header, MSG_PEEK | MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof header)) return false;
  int queued = 0;
  if (ioctl(socket, SIOCINQ, &queued) != 0 || queued < 0) return false;
  return static_cast<std::uint64_t>(queued) >= sizeof header + header.bytes;
}

bool limit_frame_stalls(int socket, int seconds) noexcept {
  timeval const limit{seconds, 0};
  return setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) == 0;
}

void encode_failure(std::string& bytes, failure_record const& failure) {
  std::uint64_t const type_bytes = failure.type_name.size();
  bytes.append(reinterpret_cast<char const*>(&failure.task), sizeof failure.task);
  bytes.append(reinterpret_cast<char const*>(&type_bytes), sizeof type_bytes);
  bytes.append(failure.type_name);
  bytes.append(failure.message);
}

std::string encode_failure(failure_record const& failure) {
  std::string bytes;
  encode_failure(bytes, failure);
  return bytes;
}

failure_record decode_failure(std::string_view bytes, std::string_view what) {
  failure_record failure;
  if (bytes.empty()) return {failure_record::no_task, "unknown exception", "(the worker ran out of memory describing it)"};
  std::uint64_t type_bytes = 0;
  if (bytes.size() < sizeof failure.task + sizeof type_bytes)
    throw error(fmt::format("{} arrived malformed ({} bytes)", what, bytes.size()));
  std::memcpy(&failure.task, bytes.data(), sizeof failure.task);
  std::memcpy(&type_bytes, bytes.data() + sizeof failure.task, sizeof type_bytes);
  bytes.remove_prefix(sizeof failure.task + sizeof type_bytes);
  if (type_bytes > bytes.size()) throw error(fmt::format("{} arrived malformed ({} bytes)", what, bytes.size()));
  failure.type_name = bytes.substr(0, static_cast<std::size_t>(type_bytes));
  failure.message = bytes.substr(static_cast<std::size_t>(type_bytes));
  return failure;
}

}  // namespace xjob::detail::process

#pragma once

// Loopback ports for test members that must listen on a port fixed before
// they start (cluster member lists).

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <stdexcept>

namespace mnemo::test {

/// Whether a listener could bind 127.0.0.1:`port` now (with SO_REUSEADDR,
/// as the cluster endpoint does).
inline bool port_is_free(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

/// The first of `n` consecutive loopback ports that are free now, chosen
/// at random in 10000-31999: below Linux's ephemeral range (32768-60999),
/// so that no outgoing connection of a busy machine takes one of them while
/// a member restarts, and at random so that tests running in parallel do
/// not pick the same ones.
inline uint16_t free_port_block(uint16_t n) {
  std::random_device rd;
  std::mt19937 rng{rd()};
  std::uniform_int_distribution<int> pick{10000, 32000 - n};
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto base = static_cast<uint16_t>(pick(rng));
    bool free = true;
    for (uint16_t i = 0; free && i < n; ++i)
      free = port_is_free(static_cast<uint16_t>(base + i));
    if (free) return base;
  }
  throw std::runtime_error("no block of free loopback ports below 32000");
}

}  // namespace mnemo::test

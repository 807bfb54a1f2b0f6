#pragma once

// Test support: a small switched network of Linux network namespaces, one
// per node, so that a test can cut a node's link without closing its
// connections (no FIN, no RST: packets just stop).
//
//   namespace <tag>-sw   bridge br0, port v<i> for node i
//   namespace <tag>-n<i> lo, eth0 = 10.213.0.<i+1>/24 (peer of v<i>)
//
// Processes run inside with exec_prefix(i) (`ip netns exec NAME`); the
// test reaches a node's loopback through a client created with netns(i).
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`.

#include <cstddef>
#include <string>
#include <vector>

namespace testnode {

class netns_lab {
 public:
  /// Creates the switch and `nodes` node namespaces, named after this
  /// process's pid so that parallel runs do not collide. Throws
  /// std::runtime_error naming the command, its output and the likely cause
  /// when a namespace or link cannot be made (everything made so far is
  /// removed again).
  explicit netns_lab(size_t nodes);

  /// Removes every namespace (and with them every link). Processes must be
  /// gone first: a namespace lives on while a process is inside.
  ~netns_lab();

  netns_lab(const netns_lab&) = delete;
  netns_lab& operator=(const netns_lab&) = delete;

  /// Namespace of node `i`.
  std::string netns(size_t i) const;

  /// Address of node `i` on the switch: 10.213.0.<i+1>.
  std::string address(size_t i) const;

  /// Command prefix that runs a binary inside node `i`'s namespace.
  std::vector<std::string> exec_prefix(size_t i) const;

  /// Takes node `i`'s switch port down: its packets are dropped silently,
  /// its sockets stay open. Throws std::runtime_error on failure.
  void cut(size_t i);

  /// Brings node `i`'s switch port up again.
  void heal(size_t i);

 private:
  std::string tag_;
  size_t nodes_;
  std::vector<std::string> made_;  // namespaces to delete
};

/// Runs `command` through /bin/sh; returns its exit status and puts its
/// stdout and stderr into `output`.
int run_command(const std::string& command, std::string& output);

}  // namespace testnode

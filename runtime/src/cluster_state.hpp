#pragma once

// The state a cluster's endpoint and routers share (private to runtime).

#include <chrono>
#include <mutex>
#include <set>
#include <string>

#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/cluster_view.hpp"

namespace mnemo::runtime {

struct cluster_state {
  explicit cluster_state(cluster_view v) : view(std::move(v)) {}
  cluster_view view;
  std::string self;
  std::string secret;
  std::chrono::milliseconds retry;
  /// Time for one request to another member.
  std::chrono::milliseconds request_timeout{10000};
  /// Shortest interval between two head notifications to one member.
  std::chrono::milliseconds feed_interval{5};
  bool tls = false;
  /// `cluster_settings::max_message_bytes` less room for the envelope
  /// around a payload: the most bytes a command, reply or batch may have.
  size_t max_payload = (size_t{16} << 20) - 65536;
  cluster_log log;
  /// Members joined in both directions, for `cluster::connected`.
  mutable std::mutex mtx;
  std::set<std::string> joined;
};

}  // namespace mnemo::runtime

#pragma once

// Running an exactly-once projection's handler over a batch of events
// inside a write transaction (private to the actors module): shared by the
// projection actor's writes and the tail writes on the writer thread.

#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "mnemo/actors/projection.hpp"

namespace mnemo::actors::detail {

using envelopes = std::vector<persistence::event_envelope>;

// Runs a handler, turning exceptions into errors.
template <class F>
inline persistence::error guarded(F&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return persistence::error{persistence::errc::invalid_argument,
                              std::string{"handler threw: "} + e.what()};
  }
}

/// The exactly-once handler of a projection: per event or grouped.
struct exactly_once_apply {
  exactly_once_handler each;
  exactly_once_group_handler group;

  explicit operator bool() const {
    return static_cast<bool>(each) || static_cast<bool>(group);
  }
};

/// A handler failure inside a write.
struct apply_failure {
  /// Index in the batch of the failing event, or with `whole_group` of the
  /// first event of the group that failed (the culprit is not known yet).
  size_t index = 0;
  bool whole_group = false;
  std::string text;
};

/// Runs `apply` inside `txn` on the events of `batch` that match `filter`,
/// in order: per event, or all of them in one group call; with `singly`, a
/// group handler gets one event per call. On a failure returns the error
/// (the caller rolls the transaction back) and describes it in `failed`.
persistence::error apply_events(persistence::write_txn& txn,
                                const envelopes& batch,
                                const exactly_once_apply& apply,
                                const projection_filter& filter, bool singly,
                                std::optional<apply_failure>& failed);

}  // namespace mnemo::actors::detail

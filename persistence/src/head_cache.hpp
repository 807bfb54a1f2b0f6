#pragma once

// Private: the group-commit writer's cache of stream heads, and what it
// knows of mnemo.head_log (head_cache.cpp; docs/format.md 2.3). Writer
// thread only.
//
// Invariants between transactions: every cached entry's `committed` head is
// the stream's head on disk and equals its `pending` head; `dirty` is empty;
// `log_records` and `log_entries` count the committed head log; an entry is
// `logged` exactly when it is in `logged`; while `log_in_cache` holds,
// `logged` holds every stream of the head log.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "head_record.hpp"

namespace mnemo::persistence {

/// A stream's head in the cache. `pending` is what the transaction in
/// progress sees; `committed` what is on disk.
struct cached_head {
  head_record committed;
  head_record pending;
  bool dirty = false;
  /// Whether `committed` is in the head log (in `head_cache::logged`).
  bool logged = false;
  /// The key of this entry in `head_cache::entries` (node addresses are
  /// stable).
  const std::string* stream = nullptr;
  /// The first 16 bytes of the key, big-endian, zero-padded: sorts like
  /// the key unless both are equal (see `sort_by_stream`).
  uint64_t order[2] = {0, 0};
};

/// A cached head with its sort key, for writing heads in key order.
struct head_order {
  uint64_t hi, lo;
  cached_head* entry;
};

/// What the transaction in progress does to the head log.
enum class head_write { none, logged, folded };

/// The writer's cached heads and head log counts.
struct head_cache {
  /// Cached heads by stream id; cleared between transactions when it grows
  /// past a bound (a miss costs one lookup).
  std::unordered_map<std::string, cached_head> entries;
  /// The entries the transaction in progress changed.
  std::vector<cached_head*> dirty;
  /// `dirty` in key order, rebuilt per commit (`sort_dirty`).
  std::vector<head_order> sorted;
  /// Records and entries in mnemo.head_log (as committed), and what the
  /// transaction in progress does to it.
  uint64_t log_records = 0;
  uint64_t log_entries = 0;
  head_write pending_write{};
  /// The cached heads that are in the committed head log. While
  /// `log_in_cache` holds, these are all of the log's streams (the log was
  /// empty at open and the cache has not been cleared since), and a fold
  /// writes them from the cache instead of reading the log.
  std::vector<cached_head*> logged;
  bool log_in_cache = true;
  /// The heads a fold from the cache writes, sorted.
  std::vector<head_order> fold_cached;
  /// Scratch space of `journal::impl::fold_heads`, kept for its capacity.
  std::unordered_map<std::string_view, head_record> fold_map;
  std::vector<const std::pair<const std::string_view, head_record>*> fold_order;

  /// Sets the head of `entry`'s stream in the current transaction.
  void store(cached_head& entry, const head_record& value);
  /// Ends the transaction: keeps (`committed`) or drops the pending heads.
  void settle(bool committed);
  /// Sorts `dirty` by stream into `sorted`.
  void sort_dirty();
  /// Stream id and pending head of `sorted[i]`.
  std::pair<std::string_view, const head_record&> sorted_head(
      size_t i) const noexcept {
    auto* entry = sorted[i].entry;
    return {*entry->stream, entry->pending};
  }
};

}  // namespace mnemo::persistence

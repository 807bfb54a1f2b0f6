#pragma once

// Which shard each stream of a replicated cluster belongs to. The streams
// of an entity type are named `prefix + id` (e.g. "account-" + id); a type
// routed through the cluster registers its prefix here, and from then on
// each of its streams belongs to the shard of (type, id) and is appended
// to that shard's log (journal_config::shard_of). Streams of no
// registered prefix are the member's own and are not replicated.
//
// Thread-safe: the journal's writer asks on every append.

#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mnemo::runtime {

class stream_shards {
 public:
  explicit stream_shards(uint32_t shards) : shards_(shards) {}

  /// Registers the streams of entity type `type`: `prefix + id`. A prefix
  /// registered twice keeps its first type.
  void add(const std::string& prefix, const std::string& type);

  /// The shard of `stream`, if a registered prefix starts it (the longest
  /// one) and an id follows.
  std::optional<uint32_t> shard_of(std::string_view stream) const;

  uint32_t shards() const noexcept { return shards_; }

 private:
  uint32_t shards_;
  mutable std::shared_mutex mtx_;
  std::vector<std::pair<std::string, std::string>> prefixes_;  // longest first
};

}  // namespace mnemo::runtime

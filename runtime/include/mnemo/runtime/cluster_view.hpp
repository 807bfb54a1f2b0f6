#pragma once

// The configured shape of a cluster and who owns what in it. Every node is
// started with the same member list (id@host:port) and shard count; the
// owner of each shard is a pure function of that list (rendezvous hashing,
// a form of consistent hashing: removing a member moves only its shards,
// adding one takes about 1/n of the shards from the others). So the single
// writer of every stream is fixed and never doubles up. No CAF here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mnemo::runtime {

/// A cluster member as configured: "id@host:port".
struct cluster_member {
  std::string id;
  std::string host;
  uint16_t port = 0;

  /// Returns "id@host:port".
  std::string to_string() const;
};

/// Parses "id@host:port". The id is 1..64 characters of [A-Za-z0-9._-];
/// the port 1..65535. Returns nothing and sets `why` on bad input.
std::optional<cluster_member> parse_member(std::string_view text,
                                           std::string& why);

/// The shard of entity `id` of type `type` among `shards` (see
/// `cluster_view::shard_of`).
uint32_t entity_shard(std::string_view type, std::string_view id,
                      uint32_t shards) noexcept;

/// What every node of a cluster must agree on.
class cluster_view {
 public:
  /// Checks and takes the member list and the shard count (1..65536).
  /// Members are kept sorted by id; ids must be unique, and so must the
  /// host:port addresses. Returns nothing and sets `why` otherwise.
  static std::optional<cluster_view> make(std::vector<cluster_member> members,
                                          uint32_t shards, std::string& why);

  const std::vector<cluster_member>& members() const noexcept {
    return members_;
  }
  uint32_t shards() const noexcept { return shards_; }

  /// Returns the member with id `id`, or null.
  const cluster_member* find(std::string_view id) const noexcept;

  /// A stable text that views with the same member ids and shard count
  /// share (canonical order) and others do not; nodes compare it at join.
  /// Addresses are not part of it: ownership and replica sets depend on
  /// the ids only, so a member may come back on another address.
  std::string fingerprint() const;

  /// Returns the shard of entity `id` of type `type`: FNV-1a of
  /// "type\0id" modulo the shard count. Stable across versions: it decides
  /// where data lives.
  uint32_t shard_of(std::string_view type, std::string_view id) const noexcept {
    return entity_shard(type, id, shards_);
  }

  /// Returns the id of the member that owns `shard`: the member with the
  /// highest hash of (member id, shard).
  const std::string& owner_of(uint32_t shard) const noexcept;

  /// Returns the owner of entity (`type`, `id`).
  const std::string& owner(std::string_view type,
                           std::string_view id) const noexcept {
    return owner_of(shard_of(type, id));
  }

  /// Returns the shards `member` owns, ascending.
  std::vector<uint32_t> shards_of(std::string_view member) const;

  /// Returns the `count` members (at most all) that hold replicas of
  /// `shard` in a replicated cluster: the highest hashes of (member id,
  /// shard), highest first, so the first is `owner_of(shard)`.
  std::vector<std::string> replicas_of(uint32_t shard, size_t count) const;

 private:
  cluster_view() = default;
  std::vector<cluster_member> members_;
  uint32_t shards_ = 0;
  std::vector<uint32_t> owner_index_;  // per shard: index into members_
};

}  // namespace mnemo::runtime

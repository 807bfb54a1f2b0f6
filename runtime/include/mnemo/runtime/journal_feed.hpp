#pragma once

// The journal feed: how a cluster member follows another member's journal
// ("notify, then pull" across nodes). The member that owns a journal
// pushes its new head to the members that subscribed (coalesced, at most
// one notification per member in flight per throttle interval); a follower
// pulls bounded batches of events from its own offset. Events travel as
// bytes (CAF's binary format of every envelope field, after a kind byte);
// see docs/cluster.md, "Following other members' journals".
//
// In a replicated cluster the same protocol also serves each shard's log
// (docs/replication.md, "Read models"), under the source name "shard/<n>"
// (`shard_source`): the head is the shard's commit point as this member
// knows it, and a batch holds the shard's committed events, each with
// `position` set to its shard position, identical on every replica. A
// member that holds a replica of the shard reads its own copy; another
// one reads through a connected member that holds one.
//
// The local protocol of the cluster endpoint for followers on this node
// (messages from other nodes are refused):
// - `(feed_follow_atom, std::string member)` -> `(uint64_t, bool)`: the
//   sender gets
//   `(feed_head_atom, member, uint64_t head)` whenever `member`'s head moves
//   (and when it (re)joins), and `(feed_down_atom, member)` when it goes
//   away; answers the last head known of `member` (0 if none yet) and
//   whether `member` is connected now. The
//   endpoint monitors the sender and drops it when it terminates.
//   Errors: `invalid_argument` if `member` is not another member (nor
//   the source of a shard of a replicated cluster).
// - `(feed_pull_atom, std::string member, uint64_t from, uint64_t max)` ->
//   `feed_batch_ptr`: up to `max` (capped at `max_feed_batch`) events of
//   `member`'s journal with position >= `from`, and its head. Errors:
//   `owner_unavailable` if `member` is not connected, `invalid_argument`
//   if it answered malformed bytes (logged as "dropped"), `timeout`, and
//   the source's journal errors.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include "mnemo/persistence/event_envelope.hpp"

namespace mnemo::runtime {

/// See the local protocol above.
using feed_follow_atom = caf::atom_constant<caf::atom("mn_ffollow")>;
using feed_pull_atom = caf::atom_constant<caf::atom("mn_fpull")>;
using feed_head_atom = caf::atom_constant<caf::atom("mn_fhead")>;
using feed_down_atom = caf::atom_constant<caf::atom("mn_fdown")>;

/// Most events one pull returns, whatever the follower asks for.
constexpr uint64_t max_feed_batch = 1000;

/// A batch of another member's events.
struct feed_batch {
  /// The source journal's head position when the batch was read.
  uint64_t head = 0;
  /// Events in position order.
  std::vector<persistence::event_envelope> events;
};

/// Batches travel between actors of one node as shared, immutable values.
using feed_batch_ptr = std::shared_ptr<const feed_batch>;

/// The source name of shard `shard`'s log: "shard/<shard>" (member ids
/// cannot contain '/').
std::string shard_source(uint32_t shard);

/// The shard a source name names, or nothing for a member id (or a
/// malformed name: digits only, no leading zero, below 2^32).
std::optional<uint32_t> parse_shard_source(const std::string& source);

/// A shard number written in decimal (no leading zero, below 2^32), as in
/// source names and etcd keys; nothing for anything else.
std::optional<uint32_t> parse_shard_number(std::string_view digits);

namespace feed {

using bytes = std::vector<char>;

/// Kind bytes of the feed's payloads.
enum class kind : uint8_t {
  subscribe = 1,
  pull = 2,
  batch = 3,
  head = 4,
  /// The same for a shard's log (a replicated cluster): each names the
  /// shard after the kind byte.
  shard_subscribe = 5,
  shard_pull = 6,
  shard_head = 7,
};

/// `(kind::subscribe)`: asks for head notifications; answered by a batch
/// without events.
bytes encode_subscribe();
/// `(kind::pull, from, max)`.
bytes encode_pull(uint64_t from, uint64_t max);
/// `(kind::head, head)`: a head notification.
bytes encode_head(uint64_t head);
/// `(kind::batch, head, events)`.
bytes encode_batch(const feed_batch& batch);
/// `(kind::shard_subscribe, shard)`: asks for the shard's commit points;
/// answered by a batch without events whose head is the commit point.
bytes encode_shard_subscribe(uint32_t shard);
/// `(kind::shard_pull, shard, from, max)`: committed events of the shard
/// from shard position `from`.
bytes encode_shard_pull(uint32_t shard, uint64_t from, uint64_t max);
/// `(kind::shard_head, shard, head)`: a commit point notification.
bytes encode_shard_head(uint32_t shard, uint64_t head);

/// A decoded request: `kind::subscribe`, `kind::pull`,
/// `kind::shard_subscribe` or `kind::shard_pull` with its fields.
struct request {
  kind what = kind::subscribe;
  uint32_t shard = 0;
  uint64_t from = 0;
  uint64_t max = 0;
};

/// A decoded head notification: of the source's journal, or (`shard`
/// set) of a shard's log.
struct head_notice {
  std::optional<uint32_t> shard;
  uint64_t head = 0;
};

/// Decodes a request. Errors: `invalid_argument` for a malformed, padded
/// or truncated payload or another kind.
caf::expected<request> decode_request(const bytes& buf);

/// Decodes a head notification (`kind::head` or `kind::shard_head`).
/// Errors: as for `decode_request`.
caf::expected<head_notice> decode_head(const bytes& buf);

/// Decodes a batch answering a pull from `from` for at most `max` events:
/// besides the format, checks that positions are strictly increasing,
/// start at `from` or later, do not exceed the head, and that there are at
/// most `max`. Errors: `invalid_argument` naming what is wrong.
caf::expected<feed_batch> decode_batch(const bytes& buf, uint64_t from,
                                       uint64_t max);

}  // namespace feed
}  // namespace mnemo::runtime

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mnemo::runtime::feed_batch_ptr)

#pragma once

// Where a projection's events come from (private to the actors module):
// this node's journal, read directly, or another member's journal or a
// shard's log, pulled through the cluster endpoint. A source tells the
// projection about new heads ("notify") and reads the batch after an
// offset ("pull"); it owns its own messages (head notifications, the
// source's availability and the backoff of failed pulls). How the events
// are then written is the projection actor's business (see
// projection_writes.hpp).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message_handler.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "projection_apply.hpp"

namespace mnemo::actors::detail {

/// What a source reports to its projection.
struct source_hooks {
  /// A head of the followed journal (or log): notified, or read with a
  /// batch.
  std::function<void(uint64_t head)> head;
  /// Pull again: a failed read may be retried now.
  std::function<void()> wake;
  /// The source cannot go on (its journal failed): the projection stops.
  std::function<void(caf::error)> fail;
  /// The projection's offset (a source compares heads with it).
  std::function<uint64_t()> offset;
};

/// A batch read, or nothing: the read failed and the source retries it
/// itself (through `source_hooks::wake`), or the projection stopped.
using read_done = std::function<void(std::optional<envelopes>)>;

/// One event read back for a dead-letter retry: the event, none if it is no
/// longer there, or the read's error.
using event_done = std::function<void(
    caf::expected<std::optional<persistence::event_envelope>>)>;

class projection_source {
 public:
  virtual ~projection_source() = default;

  /// This node's journal if the projection follows it, else null. Only
  /// then can its events be handled in the commit that writes them, and
  /// read synchronously ahead of the writes.
  virtual persistence::journal* local_journal() const = 0;

  /// Subscribes to head notifications.
  virtual void subscribe() = 0;

  /// The messages this source receives (notifications, timers).
  virtual caf::message_handler handlers() = 0;

  /// Reads up to `max` events after position `after`. A local read calls
  /// `done` before it returns; a remote one later, in the actor.
  virtual void read(uint64_t after, size_t max, read_done done) = 0;

  /// Reads the event at `position` alone.
  virtual void read_event(uint64_t position, event_done done) = 0;

  /// False while the source cannot be read.
  virtual bool available() const = 0;

  /// What is wrong with the source (not with the handler), or empty.
  virtual std::string problem() const = 0;

  /// The head for the lag gauge, readable from any thread.
  virtual std::function<uint64_t()> head_gauge() const = 0;

  /// This node's journal head, or 0 for another member's journal.
  uint64_t local_head() const {
    auto* j = local_journal();
    return j ? j->head_position() : 0;
  }
};

/// Makes the source of `spec`: this node's journal (followed through
/// `ctx.event_bus`) for an empty `spec.source`, else the member or shard
/// it names (through `ctx.cluster`).
std::unique_ptr<projection_source> open_source(caf::event_based_actor* self,
                                               const projection_context& ctx,
                                               const projection_spec& spec,
                                               source_hooks hooks);

}  // namespace mnemo::actors::detail

#pragma once

#include <cstdint>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include "mnemo/runtime/atoms.hpp"

namespace mnemo::persistence {
class journal;
}  // namespace mnemo::persistence

namespace mnemo::runtime {

class completion_sink;

/// `(subscribe_atom)` or `(subscribe_atom, caf::actor subscriber)` ->
/// `uint64_t head`: subscribes the sender (or `subscriber`) to the event bus
/// and answers with the current head position.
using subscribe_atom = caf::atom_constant<caf::atom("mn_sub")>;

/// `(unsubscribe_atom)` or `(unsubscribe_atom, caf::actor subscriber)` ->
/// `bool`: removes the sender (or `subscriber`) from the event bus; answers
/// whether it was subscribed.
using unsubscribe_atom = caf::atom_constant<caf::atom("mn_unsub")>;

/// `(head_atom, uint64_t position)`: sent by the event bus to a subscriber,
/// as a request, when the journal's head position has moved to `position`.
using head_atom = caf::atom_constant<caf::atom("mn_head")>;

/// A spawned event bus and the journal listener that feeds it.
struct event_bus_link {
  /// The bus actor; see `spawn_event_bus` for its protocol.
  caf::actor actor;
  /// Token of the commit listener on the journal. Pass it to
  /// `journal::unsubscribe` before the journal, the completion sink or the
  /// actor system goes away.
  uint64_t listener = 0;
};

/// Spawns the event bus of `j` and registers its commit listener on `j`
/// ("notify, then pull": the bus tells subscribers the new head position;
/// they read the journal themselves, in batches, from their own offset).
///
/// The writer thread never waits for the bus or its subscribers: after a
/// commit that wrote events the listener stores the new head in an atomic
/// and, unless a wake-up is already pending, posts one wake-up message
/// through `sink` (so bursts of commits coalesce into one wake-up). Pass the
/// sink that matches the scheduler (`deferred_completions` under CAF's
/// `test_coordinator`). The bus never reads the journal itself.
///
/// Protocol of the bus actor:
/// - `(subscribe_atom)` / `(subscribe_atom, caf::actor subscriber)` ->
///   `uint64_t head`: subscribes the sender (or `subscriber`), monitors it
///   and answers with the current head; later notifications carry larger
///   positions only. Subscribing again is harmless (one subscription).
///   Errors: `invalid_argument` for an anonymous sender or invalid handle.
/// - `(unsubscribe_atom)` / `(unsubscribe_atom, caf::actor subscriber)` ->
///   `bool`: ends the subscription; `false` if there was none. A
///   notification already sent may still arrive.
/// - `(stats_atom)` -> `(size_t subscribers, size_t awaiting, uint64_t
///   notifications, uint64_t wakeups)`: subscribers now; those with an
///   unanswered notification; notifications sent and wake-ups received
///   since the start.
/// A subscriber that terminates is dropped.
///
/// Subscriber contract: the bus sends `(head_atom, uint64_t position)` as a
/// request and sends nothing more to that subscriber until the request has
/// been answered (any reply, an empty one or an error; a subscriber that
/// terminates counts too). Then, if the head has moved on meanwhile, the
/// subscriber gets one notification with the newest head: notifications in
/// between are skipped, positions are strictly increasing per subscriber,
/// and the last head of a burst always arrives. The handler should return
/// quickly: schedule its pull (e.g. send itself a message, or start reading
/// if idle) and return, so that the next notification can be sent. A
/// subscriber may instead answer later through a response promise (e.g.
/// once its pull is done) to throttle notifications; one that never answers
/// gets no further messages and costs the bus nothing but its entry.
///
/// Threading: call from any thread; `sink` and `j` must outlive the
/// listener (until `journal::unsubscribe(link.listener)` returned). The
/// bus holds no reference to `j`. Stop the bus with an exit message.
[[nodiscard]] event_bus_link spawn_event_bus(caf::actor_system& sys,
                                             persistence::journal& j,
                                             completion_sink& sink);

}  // namespace mnemo::runtime

#pragma once

// The persistence that every persistent actor shares: aggregates
// (aggregate.hpp) and sagas (mnemo/sagas/saga_actor.hpp) each hold one
// `persistent_core` for their stream and differ only in what they do with
// the events.
//
// It owns the stream's id, the version the actor has applied (the sequence
// of its last event), the sequence of its latest snapshot, and the bridge
// from the journal's writer thread back into the actor. It provides:
// - recovery from the latest snapshot, then the events after it in chunks
//   (`load_snapshot`, `replay_chunk`): the actor replays one chunk per
//   message to itself, so a long stream never blocks its thread; what
//   arrives meanwhile waits in the actor's stash, which is bounded
//   (`stash_full` is the answer past its limit);
// - persist: `append` expects the current version (so a second writer of
//   the stream fails with `version_conflict`), runs the caller's `store`
//   with the result on the writer thread, then sends `(Atom, ticket)` to
//   the actor through the node's completion sink; `applied(n)` moves the
//   version once the actor has the result;
// - snapshots: `snapshot_due(every)` and `save_snapshot`, which keeps K and
//   may let the events before the oldest kept one go.
// Every member function runs on the actor's thread, except `store`.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/local_actor.hpp>
#include <caf/send.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::actors {

/// What a persistent actor uses of its node. The pointees outlive it.
struct journal_client {
  persistence::journal* journal = nullptr;
  const persistence::event_registry* registry = nullptr;
  runtime::completion_sink* completions = nullptr;
};

/// The stream, version and snapshot bookkeeping of one persistent actor.
class persistent_core {
 public:
  persistent_core(journal_client client, std::string stream)
      : client_(client), stream_(std::move(stream)) {}

  const std::string& stream() const noexcept { return stream_; }

  /// The sequence of the last event the actor applied (0: none).
  uint64_t version() const noexcept { return version_; }

  const journal_client& client() const noexcept { return client_; }

  // -- recovery ---------------------------------------------------------------

  /// Decodes the stream's latest snapshot (a registered `T`) into `into`
  /// and its metadata into `meta` (if not null); the version becomes its
  /// sequence. Returns whether there was one. Errors: the journal's, or
  /// the registry's if the snapshot does not decode (a bad snapshot is not
  /// skipped: recovering from the events alone could differ).
  template <class T>
  caf::expected<bool> load_snapshot(T& into,
                                    persistence::event_metadata* meta) {
    auto snap = client_.journal->snapshots().load(
        stream_, persistence::snapshot_criteria::latest());
    if (!snap) return runtime::to_caf_error(snap.error());
    if (!*snap) return false;
    auto& s = **snap;
    auto value = client_.registry->template decode_payload<T>(
        s.type, s.schema_version, s.payload, stream_, s.meta.sequence);
    if (!value) return runtime::to_caf_error(value.error());
    into = std::move(*value);
    version_ = s.meta.sequence;
    last_snapshot_ = version_;
    if (meta != nullptr) *meta = std::move(s.metadata);
    return true;
  }

  /// Reads up to `max` events after the version and calls
  /// `on_event(const event_envelope&)` for each, which returns a
  /// `caf::error` (none: applied; the version moves to its sequence).
  /// Returns whether more may follow (the chunk was full). Errors: the
  /// journal's, or the first one `on_event` returned.
  template <class F>
  caf::expected<bool> replay_chunk(size_t max, F&& on_event) {
    auto events =
        client_.journal->read_stream(stream_, version_ + 1, UINT64_MAX, max);
    if (!events) return runtime::to_caf_error(events.error());
    for (auto& env : *events) {
      if (auto err = on_event(env)) return err;
      version_ = env.sequence;
    }
    return events->size() == max;
  }

  // -- persist ----------------------------------------------------------------

  /// Appends `batch` expecting the current version. On the journal's writer
  /// thread `store(expected<append_result>)` keeps the result (in memory
  /// the actor shares); then the actor `self` gets `(Atom, ticket)` on its
  /// own thread. The version moves only with `applied`.
  template <class Atom, class Store>
  void append(caf::local_actor* self, std::vector<persistence::new_event> batch,
              Atom, uint64_t ticket, Store store) {
    auto me = caf::actor_cast<caf::actor>(self);
    auto* sink = client_.completions;
    sink->expect();
    client_.journal->append(
        stream_, std::move(batch),
        persistence::expected_version::exact(version_),
        [store = std::move(store), sink, me,
         ticket](persistence::expected<persistence::append_result> res) {
          store(std::move(res));
          sink->post([me, ticket] { caf::anon_send(me, Atom::value, ticket); });
        });
  }

  /// `n` events of the actor's are durable and applied.
  void applied(uint64_t n) noexcept { version_ += n; }

  // -- snapshots --------------------------------------------------------------

  /// Whether a snapshot is due: `every` > 0 and the version passed a
  /// multiple of it since the last snapshot.
  bool snapshot_due(uint64_t every) const noexcept {
    return every > 0 && version_ / every != last_snapshot_ / every;
  }

  /// Saves `value` (a registered type) as the snapshot at the current
  /// version, with `meta`, keeping the newest `keep`; once it is stored,
  /// deletes the events up to `delete_to` (0: none). In a replicated
  /// cluster the snapshot joins its shard's log. Returns false, saving
  /// nothing, if `T` is not registered (snapshots are an optimisation).
  template <class T>
  bool save_snapshot(const T& value, persistence::event_metadata meta,
                     size_t keep, uint64_t delete_to = 0) {
    persistence::snapshot snap;
    snap.meta.stream_id = stream_;
    snap.meta.sequence = version_;
    if (client_.registry->encode(value, snap.type, snap.schema_version,
                                 snap.payload))
      return false;
    snap.metadata = std::move(meta);
    last_snapshot_ = version_;
    auto* sink = client_.completions;
    auto* journal = client_.journal;
    sink->expect();
    journal->snapshots().save(
        std::move(snap), std::max<size_t>(keep, 1),
        [sink, journal, stream = stream_, delete_to](persistence::error err) {
          // Only a stored snapshot may let events go.
          if (!err && delete_to > 0) {
            sink->expect();
            journal->delete_events_to(
                stream, delete_to,
                [sink](persistence::error) { sink->post([] {}); });
          }
          sink->post([] {});
        });
    return true;
  }

 private:
  journal_client client_;
  std::string stream_;
  uint64_t version_ = 0;
  uint64_t last_snapshot_ = 0;
};

/// The error a persistent actor answers when its stash is full: `what`
/// ("aggregate 'account-a1'") has `waiting` `things` ("commands") waiting.
inline caf::error stash_full(const std::string& what, size_t waiting,
                             const char* things) {
  return runtime::make_error(runtime::errc::stash_overflow,
                             what + " has " + std::to_string(waiting) + " " +
                                 things + " waiting; retry later");
}

}  // namespace mnemo::actors

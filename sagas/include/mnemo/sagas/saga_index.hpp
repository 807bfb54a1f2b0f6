#pragma once

// The saga index: a read model of every saga's phase, kept by an
// exactly-once projection over the saga event streams, so that a node can
// list the sagas that need attention or are unfinished, count sagas by
// phase, and look one up, without reading any saga's stream.
//
// Saga streams are named "saga-<type>-<id>" (see `saga_stream`); the type
// is the text up to the first '-' after "saga-", so saga type names must
// not contain '-'.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/sagas/saga_progress.hpp"

namespace mnemo::sagas {

/// One saga as the index knows it.
struct saga_entry {
  std::string type;
  std::string id;
  /// `saga_phase` as a number (see `phase()`).
  uint8_t phase_code = 0;
  /// As in `saga_progress`: the current step, or the completed steps still
  /// to compensate.
  uint32_t step = 0;
  uint32_t attempt = 0;
  /// The last failure, or the reason of the compensation.
  std::string error;
  /// Commit times (ms since the epoch) of the first and the last event.
  int64_t started_ms = 0;
  int64_t updated_ms = 0;
  /// Global position of the last event folded in.
  uint64_t position = 0;

  saga_phase phase() const noexcept {
    return static_cast<saga_phase>(phase_code);
  }

  MSGPACK_DEFINE_MAP(type, id, phase_code, step, attempt, error, started_ms,
                     updated_ms, position)
};

/// The index tables and the projection that maintains them. Cheap to copy.
class saga_index {
 public:
  /// Projection name (offset and dead letters are stored under it).
  static constexpr const char* projection_name = "mnemo.saga_index";

  /// `types` must know the saga events (`register_types`) and outlive the
  /// projection.
  explicit saga_index(const persistence::event_registry& types);

  /// The exactly-once projection over streams "saga-*". Spawn it with
  /// `actors::spawn_projection`.
  actors::projection_spec projection() const;

  /// Returns saga `id` of `type`, if the projection has seen it.
  persistence::expected<std::optional<saga_entry>> get(
      const persistence::journal& j, const std::string& type,
      const std::string& id) const;

  /// Returns at most `limit` sagas of `type` in `phase`, in id order,
  /// starting after id `after` ("" for the first page).
  persistence::expected<std::vector<saga_entry>> list(
      const persistence::journal& j, const std::string& type, saga_phase phase,
      const std::string& after, size_t limit) const;

  /// Returns the number of sagas of `type` per phase name
  /// (`to_string(saga_phase)`); phases without sagas are absent.
  persistence::expected<std::map<std::string, uint64_t>> counts(
      const persistence::journal& j, const std::string& type) const;

  /// Folds `env` (a saga event) into the index inside `txn`; events of
  /// other streams are ignored. The projection's handler.
  persistence::error apply(persistence::write_txn& txn,
                           const persistence::event_envelope& env) const;

  /// Deletes every entry (for a rebuild).
  persistence::error clear(persistence::write_txn& txn) const;

 private:
  const persistence::event_registry* types_;
};

/// Splits stream id "saga-<type>-<id>" into type and id; false for other
/// streams.
bool parse_saga_stream(const std::string& stream, std::string& type,
                       std::string& id);

}  // namespace mnemo::sagas

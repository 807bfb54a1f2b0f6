#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

class journal;

/// An event a projection gave up on (strategy "skip" or "retry then
/// skip"), parked for listing and retrying.
struct dead_letter {
  /// Name of the projection (as for its offset).
  std::string projection;
  /// Global position of the event; with `projection` the record's key.
  uint64_t position = 0;
  /// Stream id of the event.
  std::string stream_id;
  /// Sequence of the event in its stream.
  uint64_t sequence = 0;
  /// Registered type name of the event.
  std::string event_type;
  /// The handler's last error, as text (e.g. `error::to_string()`).
  std::string error;
  /// How often the handler was tried.
  uint32_t attempts = 0;
  /// When the event was parked, milliseconds since the Unix epoch; 0 on
  /// `park` means "now".
  int64_t parked_at_ms = 0;
};

/// Dead letters of projections by (projection, position), in the journal's
/// data directory (database `mnemo.dead_letters`, docs/format.md). Parking
/// in the same `write_txn` as the projection's offset update makes "skip
/// this event" exactly-once: the event is either parked and passed, or
/// neither.
///
/// Blocking members write through the journal's writer (one group commit)
/// and must not run on the writer thread; `*_in` members work inside a
/// transaction the caller already has. Reads may run on any thread.
class dead_letter_store {
 public:
  /// Internal: made by the journal.
  explicit dead_letter_store(journal& owner) noexcept : journal_(&owner) {}

  /// Stores `letter` inside `txn`, replacing a dead letter with the same
  /// projection and position (a retry that failed again). A zero
  /// `parked_at_ms` is replaced by the current time.
  /// Errors: `invalid_argument` (projection name empty, over 400 bytes or
  /// with a NUL byte), `storage_full`, `storage_error`.
  static error park_in(write_txn& txn, dead_letter letter);

  /// `park_in` in its own group commit. Blocking: not from the writer
  /// thread. Errors: as for `park_in`, plus `journal_failed`,
  /// `journal_closed`.
  error park(dead_letter letter);

  /// Returns up to `limit` dead letters of `projection` with position >=
  /// `from_position`, in position order. Errors: `invalid_argument` (bad
  /// projection name), `corrupt_record` naming projection and position,
  /// `storage_error`.
  expected<std::vector<dead_letter>> list(std::string_view projection,
                                          uint64_t from_position,
                                          size_t limit) const;
  /// `list` inside `txn` (a read or a write transaction).
  static expected<std::vector<dead_letter>> list_in(any_txn txn,
                                                    std::string_view projection,
                                                    uint64_t from_position,
                                                    size_t limit);

  /// Returns the dead letter of `projection` at `position`, or nothing.
  /// Errors: as for `list`.
  expected<std::optional<dead_letter>> get(std::string_view projection,
                                           uint64_t position) const;
  /// `get` inside `txn`.
  static expected<std::optional<dead_letter>> get_in(
      any_txn txn, std::string_view projection, uint64_t position);

  /// Deletes the dead letter of `projection` at `position` inside `txn`
  /// (after a successful retry, in the same transaction as its effect);
  /// returns whether it existed. Errors: as for `park_in`.
  static expected<bool> remove_in(write_txn& txn, std::string_view projection,
                                  uint64_t position);

  /// `remove_in` in its own group commit. Blocking: not from the writer
  /// thread. Errors: as for `park`.
  expected<bool> remove(std::string_view projection, uint64_t position);

  /// Returns the number of dead letters of `projection` (walks them: O(n)).
  /// Errors: `invalid_argument` (bad projection name), `storage_error`.
  expected<uint64_t> count(std::string_view projection) const;
  /// `count` inside `txn`.
  static expected<uint64_t> count_in(any_txn txn, std::string_view projection);

 private:
  journal* journal_;
};

}  // namespace mnemo::persistence

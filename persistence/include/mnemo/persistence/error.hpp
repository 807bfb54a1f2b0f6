#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mnemo::persistence {

/// Error codes of the persistence module. Values are stable and never
/// renumbered: they are stored in dead letters and cross the network.
enum class errc : uint8_t {
  /// Not an error.
  none = 0,
  /// An argument violates a documented limit (empty stream id, NUL byte in a
  /// stream id or tag, key longer than the LMDB key limit, ...).
  invalid_argument = 1,
  /// An append's expected version did not match the stream's current
  /// version. `error::conflict()` carries the expected and actual versions.
  version_conflict = 2,
  /// An event id of an append batch is already stored, but the batch is not
  /// an exact retry of the original one (other stream or partial overlap).
  duplicate_event_id = 3,
  /// A stored record failed its checksum or could not be decoded: the data
  /// directory is damaged. The message names stream, sequence and position.
  corrupt_record = 4,
  /// An event type name is not registered in the event registry.
  unknown_event_type = 5,
  /// A stored schema version has no upcaster path to the current version,
  /// or is newer than the current version.
  unknown_schema_version = 6,
  /// A payload could not be decoded into the requested C++ type.
  decode_failed = 7,
  /// A payload could not be encoded.
  encode_failed = 8,
  /// The storage device is full, the process hit its file size limit
  /// (RLIMIT_FSIZE), or the map reached `max_map_size`. A commit write that
  /// the kernel cut short (LMDB reports EIO) counts when data.mdb is at the
  /// limit or the file system has less than 1 MiB left.
  storage_full = 9,
  /// LMDB or the file system reported an error (message keeps its text).
  storage_error = 10,
  /// The directory is not a mnemo data directory, or has another format
  /// version.
  format_mismatch = 11,
  /// A previous commit failed; the journal refuses writes until reopened.
  /// The message repeats the original error.
  journal_failed = 12,
  /// The journal is closing and accepts no more requests.
  journal_closed = 13,
  /// The requested item does not exist.
  not_found = 14,
  /// Another process has the data directory open for writing.
  directory_in_use = 15,
  /// The stream moved to another cluster member (`journal::release_stream`)
  /// and takes no more appends here. The message names the member.
  stream_moved = 16,
  /// A replication request came from the leader of an older epoch than this
  /// replica already follows (fencing, `replica_log`), or a leader tried to
  /// begin an epoch that is not newer than the log's.
  stale_epoch = 17,
  /// A replicated batch does not continue this replica's log (a gap, an
  /// older epoch, or a record that does not follow its stream): the replica
  /// must truncate or catch up first (`replica_log`).
  log_mismatch = 18,
  /// In a replicated journal: this member does not lead the stream's shard,
  /// or lost its leadership before a majority acknowledged the append. For
  /// an append the outcome is then unknown: ask the shard's new leader,
  /// retrying with the same event ids (`replication_gate`).
  not_leader = 19,
};

/// Returns the name of `x`, e.g. "version_conflict".
const char* to_string(errc x) noexcept;

/// Prints `to_string(x)` (for test frameworks and logs).
std::ostream& operator<<(std::ostream& out, errc x);

/// Detail of a `version_conflict` error.
struct version_conflict_info {
  /// Stream whose version did not match.
  std::string stream;
  /// The version the caller expected (0 for `no_stream`).
  uint64_t expected = 0;
  /// The stream's version at the time of the append.
  uint64_t actual = 0;
};

/// A persistence error: a code plus a message a user can act on. A default
/// constructed error means success. Cheap to move; copy when fanning out.
class error {
 public:
  /// Creates the "no error" value.
  error() = default;

  /// Creates an error with code `code` and a human-readable `message` saying
  /// what failed, on which stream/sequence or input, and what to do.
  error(errc code, std::string message)
      : code_(code), message_(std::move(message)) {}

  /// Creates a `version_conflict` error with its detail.
  static error conflict(version_conflict_info info);

  /// Returns whether this value holds an error.
  explicit operator bool() const noexcept { return code_ != errc::none; }

  /// Returns the error code (`errc::none` for success).
  errc code() const noexcept { return code_; }

  /// Returns the message (empty for success).
  const std::string& message() const noexcept { return message_; }

  /// Returns the conflict detail of a `version_conflict` error, else null.
  const version_conflict_info* conflict() const noexcept {
    return conflict_ ? &*conflict_ : nullptr;
  }

  /// Returns "<code>: <message>".
  std::string to_string() const;

 private:
  errc code_ = errc::none;
  std::string message_;
  std::optional<version_conflict_info> conflict_;
};

/// Either a value of type `T` or an `error`, in the style of
/// `caf::expected`. Precondition checks: `value()` on an error and `error()`
/// on a value are programmer errors (asserted).
template <class T>
class [[nodiscard]] expected {
 public:
  /// Holds a value.
  expected(T x) : data_(std::in_place_index<0>, std::move(x)) {}

  /// Holds an error. Precondition: `err` is an error.
  expected(persistence::error err)
      : data_(std::in_place_index<1>, std::move(err)) {}

  /// Returns whether a value is held.
  explicit operator bool() const noexcept { return data_.index() == 0; }

  /// Returns the held value. Precondition: a value is held.
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// Returns the held error. Precondition: no value is held.
  const persistence::error& error() const& { return std::get<1>(data_); }
  persistence::error&& error() && { return std::get<1>(std::move(data_)); }

 private:
  std::variant<T, persistence::error> data_;
};

}  // namespace mnemo::persistence

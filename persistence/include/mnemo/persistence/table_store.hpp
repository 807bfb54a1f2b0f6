#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

/// Either kind of transaction, for functions that only read: converts
/// implicitly from `read_txn&` and `write_txn&`. Inside a `write_txn`, reads
/// see the writes the transaction made so far. Valid as long as the
/// transaction it was made from.
class any_txn {
 public:
  /// Wraps a read transaction.
  any_txn(read_txn& txn) noexcept : state_(&txn.state()) {}

  /// Wraps a write transaction.
  any_txn(write_txn& txn) noexcept : state_(&txn.state()) {}

  /// Internal: the transaction state.
  detail::txn_state& state() const noexcept { return *state_; }

 private:
  detail::txn_state* state_;
};

/// Raw key-value tables for read models, kept in the journal's LMDB
/// environment (database `mnemo.tables`, docs/format.md) so that a
/// projection updates its read model and its offset
/// (`offset_store::store_in`) in one `journal::write`: exactly-once.
///
/// A table is a name; it exists while it holds a key. Keys and values are
/// byte strings; keys of one table are ordered bytewise (`memcmp`, shorter
/// first on a common prefix). For typed tables with order-preserving keys,
/// msgpack values and secondary indexes see `read_model.hpp`.
///
/// Limits: a table name is 1 to `max_table_name_size` bytes without a NUL
/// byte; a key (may be empty) is at most `max_key_size(table)` bytes; a
/// value may have any size the map allows. Table names that contain the byte
/// 0x01 are used by `read_model.hpp` for secondary indexes.
///
/// Thread safety: all members are static and work inside the transaction
/// they are given, on the thread that runs it: write functions on the
/// journal's writer thread (inside `journal::write`), reads inside
/// `journal::read` or a `journal::write`.
class table_store {
 public:
  /// Longest table name in bytes.
  static constexpr size_t max_table_name_size = 200;

  /// A `limit` that does not limit.
  static constexpr size_t unlimited = std::numeric_limits<size_t>::max();

  /// Called for each entry of a scan, in key order; returns whether to go
  /// on. `key` and `value` point into the map and are valid only during the
  /// call. Must not write to the table store.
  using visitor =
      std::function<bool(std::string_view key, std::string_view value)>;

  /// Returns the longest key allowed in `table`: LMDB's key limit (511
  /// bytes) minus the table name and its NUL separator, so at least 310.
  static size_t max_key_size(std::string_view table) noexcept;

  /// Checks a table name. Errors: `invalid_argument` (empty, NUL byte,
  /// longer than `max_table_name_size`).
  static error check_table_name(std::string_view table);

  /// Sets `key` of `table` to `value` inside `txn`, replacing any old value.
  /// Errors: `invalid_argument` (bad table name, key too long),
  /// `storage_full` / `storage_error` (the group commit fails; the writer
  /// grows the map and retries it, or splits it until the request that does
  /// not fit fails alone).
  static error put_in(write_txn& txn, std::string_view table,
                      std::string_view key, std::string_view value);

  /// Deletes `key` of `table` inside `txn`; returns whether it existed.
  /// Errors: as for `put_in`.
  static expected<bool> erase_in(write_txn& txn, std::string_view table,
                                 std::string_view key);

  /// Returns the value of `key` in `table`, or nothing.
  /// Errors: `invalid_argument` (bad table name, key too long),
  /// `storage_error`.
  static expected<std::optional<std::string>> get_in(any_txn txn,
                                                     std::string_view table,
                                                     std::string_view key);

  /// Calls `fn` for at most `limit` entries of `table` with
  /// `from <= key < to`, in key order, until `fn` returns false. An empty
  /// `to` means "to the end of the table". Returns the number of entries
  /// `fn` was called for. Errors: `invalid_argument` (bad table name, a
  /// bound longer than the key limit), `storage_error`.
  static expected<size_t> scan_in(any_txn txn, std::string_view table,
                                  std::string_view from, std::string_view to,
                                  size_t limit, const visitor& fn);

  /// Calls `fn` for at most `limit` entries of `table` whose key starts
  /// with `prefix`, in key order, until `fn` returns false; an empty prefix
  /// visits the whole table. Returns the number of entries visited.
  /// Errors: as for `scan_in`.
  static expected<size_t> scan_prefix_in(any_txn txn, std::string_view table,
                                         std::string_view prefix, size_t limit,
                                         const visitor& fn);

  /// Returns the number of keys in `table`. Walks the table's keys: O(n),
  /// a few million keys per second; a read model that needs a cheap count
  /// keeps one itself. Errors: `invalid_argument` (bad table name),
  /// `storage_error`.
  static expected<uint64_t> count_in(any_txn txn, std::string_view table);

  /// Deletes every key of `table` inside `txn` (for projection rebuilds);
  /// returns how many were deleted. The deletion is part of `txn`, so it
  /// commits atomically with whatever else `txn` writes (e.g. the reset
  /// offset). Large tables: LMDB caps the pages one transaction may dirty
  /// (MDB_IDL_UM_MAX, 131072) but writes dirty pages out early (spills)
  /// when the cap is near, so a clear in one transaction works far beyond
  /// it (tested: 3M keys with 100-byte values, 1M keys with 1000-byte values
  /// = 250k leaf pages). Should LMDB still return `MDB_TXN_FULL`, the
  /// writer retries the group commit in halves; a write function that fails
  /// on its own returns `storage_error` ("MDB_TXN_FULL") with nothing
  /// deleted, and the table is then cleared with `clear_some_in` over
  /// several transactions. Errors: as for `put_in`.
  static expected<uint64_t> clear_in(write_txn& txn, std::string_view table);

  /// Deletes up to `max_keys` keys of `table` (the smallest ones) inside
  /// `txn`; returns how many were deleted, less than `max_keys` once the
  /// table is empty. For clearing a huge table over several transactions.
  /// Errors: as for `put_in`.
  static expected<uint64_t> clear_some_in(write_txn& txn,
                                          std::string_view table,
                                          uint64_t max_keys);

  /// Returns the names of the tables that hold at least one key, in byte
  /// order, index tables of `read_model.hpp` included. Costs one B-tree
  /// lookup per table, not per key. Errors: `storage_error`.
  static expected<std::vector<std::string>> tables_in(any_txn txn);

  /// Returns `bytes` printable for error messages: printable ASCII as is,
  /// other bytes as `\xNN`, cut after 64 bytes with "...".
  static std::string printable(std::string_view bytes);
};

}  // namespace mnemo::persistence

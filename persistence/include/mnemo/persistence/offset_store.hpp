#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

class journal;

/// Projection offsets: name -> global position of the last event the
/// projection has fully handled. Storing an offset in the same `write_txn`
/// as a read-model update makes the pair exactly-once.
class offset_store {
 public:
  /// Internal: made by the journal.
  explicit offset_store(journal& owner) noexcept : journal_(&owner) {}

  /// Sets the offset of `name` inside `txn`.
  /// Errors: `invalid_argument` (empty name, NUL byte, over 400 bytes),
  /// `storage_error`.
  static error store_in(write_txn& txn, std::string_view name,
                        uint64_t position);

  /// Sets the offset of `name` in its own group commit. Blocking: not from
  /// the writer thread. Errors: as for `store_in`, plus `journal_failed`,
  /// `journal_closed`.
  error store(std::string_view name, uint64_t position);

  /// Returns the offset of `name`, 0 if none was stored.
  expected<uint64_t> load(std::string_view name) const;
  /// `load` inside `txn`.
  static expected<uint64_t> load_in(read_txn& txn, std::string_view name);
  /// `load` inside a write transaction: sees what it wrote so far.
  static expected<uint64_t> load_in(write_txn& txn, std::string_view name);

  /// Removes the offset of `name` (it reads as 0 again).
  error remove(std::string_view name);

  /// Returns every (name, offset) pair in name order.
  expected<std::vector<std::pair<std::string, uint64_t>>> list() const;

 private:
  journal* journal_;
};

}  // namespace mnemo::persistence

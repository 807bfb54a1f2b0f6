#pragma once

namespace mnemo::persistence {

namespace detail {
struct txn_state;
}  // namespace detail

/// A handle to the journal's current write transaction, passed to functions
/// run by `journal::write`. Everything written through it commits
/// atomically with the group commit it belongs to, or not at all. Valid only
/// during the call it was passed to; only the journal's writer thread makes
/// these.
class write_txn {
 public:
  /// Internal: wraps the writer's transaction state.
  explicit write_txn(detail::txn_state& state) noexcept : state_(&state) {}

  /// Internal: the transaction state.
  detail::txn_state& state() const noexcept { return *state_; }

 private:
  detail::txn_state* state_;
};

/// A handle to a read-only snapshot of the journal, passed to functions run
/// by `journal::read`. Sees every commit completed before it began and
/// nothing after. Valid only during the call it was passed to.
class read_txn {
 public:
  /// Internal: wraps a read transaction's state.
  explicit read_txn(detail::txn_state& state) noexcept : state_(&state) {}

  /// Internal: the transaction state.
  detail::txn_state& state() const noexcept { return *state_; }

 private:
  detail::txn_state* state_;
};

}  // namespace mnemo::persistence

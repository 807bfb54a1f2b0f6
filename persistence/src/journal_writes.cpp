// Caller-supplied write functions (`journal::write`, `write_after_appends`):
// queued like appends, each run in a child transaction of its group commit
// so that its failure undoes only its own changes. Owns no state.

#include "mnemo/persistence/journal.hpp"

#include <exception>

#include "journal_impl.hpp"

namespace mnemo::persistence {

void journal::write(write_function fn, write_handler done) {
  impl_->enqueue(write_request{std::move(fn), std::move(done), false});
}

void journal::write_after_appends(write_function fn, write_handler done) {
  impl_->enqueue(write_request{std::move(fn), std::move(done), true});
}

error journal::write(write_function fn) {
  return blocking(
      [&](write_handler done) { write(std::move(fn), std::move(done)); });
}

int journal::impl::apply(detail::txn_state& st, write_request& req,
                         outcome& out, uint64_t&, int64_t) {
  detail::txn_state child;
  child.dbs = &dbs;
  if (auto rc = mdb_txn_begin(env, st.txn, 0, &child.txn)) return rc;
  write_txn txn{child};
  error err;
  try {
    err = req.fn(txn);
  } catch (const std::exception& e) {
    err = error{errc::storage_error,
                std::string{"write function threw: "} + e.what()};
  }
  if (child.fatal_rc != 0) {
    mdb_txn_abort(child.txn);
    return child.fatal_rc;
  }
  if (err) {
    mdb_txn_abort(child.txn);
    out = std::move(err);
    return 0;
  }
  return mdb_txn_commit(child.txn);
}

}  // namespace mnemo::persistence

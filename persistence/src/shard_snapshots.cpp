// Snapshots that join a shard's log (`snapshot_store::save` of a shard's
// stream): `journal::append_snapshot` appends one event that carries the
// snapshot, and the writer stores the snapshot in mnemo.snapshots in the
// same transaction (as a replica does when it applies that record,
// replica_log.cpp). Owns no state.

#include "mnemo/persistence/journal.hpp"

#include "journal_impl.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

void journal::append_snapshot(uint32_t shard, snapshot snap, uint64_t keep,
                              write_handler done) {
  std::vector<new_event> events(1);
  events[0].type = std::string{shard_snapshot_type};
  events[0].payload = encode_shard_snapshot(snap, keep);
  append_request req;
  req.stream = shard_stream(shard);
  if (auto err = prepare_append(req, events)) return done(std::move(err));
  req.shard = shard;
  if (auto err = check_record_sizes(req, impl_->cfg.max_shard_record_bytes))
    return done(std::move(err));
  req.snapshot =
      std::make_unique<snapshot_write>(snapshot_write{std::move(snap), keep});
  append_handler appended = [done =
                                 std::move(done)](expected<append_result> res) {
    done(res ? error{} : std::move(res).error());
  };
  if (!through_gate(impl_->cfg.gate, req, appended)) return;
  req.done = std::move(appended);
  impl_->enqueue(std::move(req));
}

int journal::impl::store_snapshot(detail::txn_state& st, const snapshot& snap,
                                  uint64_t keep) {
  auto key_bytes = name_key(snap.meta.stream_id, snap.meta.sequence);
  auto record = encode_snapshot(snap);
  auto key = to_val(key_bytes);
  auto val = to_val(record);
  if (auto rc = mdb_put(st.txn, dbs.snapshots, &key, &val, 0)) return rc;
  if (keep == 0) return 0;
  write_txn txn{st};
  if (auto err = snapshot_store::retain_in(txn, snap.meta.stream_id, keep))
    // Only LMDB fails here (the stream id was checked): the commit fails.
    return st.fatal_rc != 0 ? st.fatal_rc : MDB_BAD_TXN;
  return 0;
}

}  // namespace mnemo::persistence

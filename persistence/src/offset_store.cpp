#include "mnemo/persistence/offset_store.hpp"

#include "journal_impl.hpp"
#include "mnemo/persistence/journal.hpp"

namespace mnemo::persistence {

error offset_store::store_in(write_txn& txn, std::string_view name,
                             uint64_t position) {
  if (auto err = check_name(name, "offset name")) return err;
  auto& st = txn.state();
  be64_key value{position};
  auto key = to_val(name);
  auto val = value.val();
  return st.check(mdb_put(st.txn, st.dbs->offsets, &key, &val, 0),
                  "mdb_put (offset)");
}

error offset_store::store(std::string_view name, uint64_t position) {
  if (auto err = check_name(name, "offset name")) return err;
  return journal_->write(
      [&](write_txn& txn) { return store_in(txn, name, position); });
}

expected<uint64_t> offset_store::load_in(read_txn& txn, std::string_view name) {
  if (auto err = check_name(name, "offset name")) return err;
  auto& st = txn.state();
  auto key = to_val(name);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->offsets, &key, &val);
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (auto err = st.check(rc, "mdb_get (offset)")) return err;
  if (val.mv_size != 8)
    return error{errc::corrupt_record, "corrupt offset record of '" +
                                           std::string{name} +
                                           "'; reset the projection"};
  return get_be64(static_cast<const char*>(val.mv_data));
}

expected<uint64_t> offset_store::load_in(write_txn& txn,
                                         std::string_view name) {
  // The same lookup: LMDB reads a write transaction like a read one.
  read_txn view{txn.state()};
  return load_in(view, name);
}

expected<uint64_t> offset_store::load(std::string_view name) const {
  expected<uint64_t> result{uint64_t{0}};
  auto err = journal_->read([&](read_txn& txn) {
    result = load_in(txn, name);
    return error{};
  });
  if (err) return err;
  return result;
}

error offset_store::remove(std::string_view name) {
  if (auto err = check_name(name, "offset name")) return err;
  return journal_->write([&](write_txn& txn) {
    auto& st = txn.state();
    auto key = to_val(name);
    auto rc = mdb_del(st.txn, st.dbs->offsets, &key, nullptr);
    return rc == MDB_NOTFOUND ? error{} : st.check(rc, "mdb_del (offset)");
  });
}

expected<std::vector<std::pair<std::string, uint64_t>>> offset_store::list()
    const {
  std::vector<std::pair<std::string, uint64_t>> result;
  auto err = journal_->read([&](read_txn& txn) -> error {
    auto& st = txn.state();
    cursor cur;
    if (auto err = cur.open(st, st.dbs->offsets)) return err;
    MDB_val key;
    MDB_val val;
    auto rc = cur.get(key, val, MDB_FIRST);
    for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
      if (val.mv_size != 8)
        return error{errc::corrupt_record, "corrupt offset record of '" +
                                               std::string{to_view(key)} +
                                               "'; reset the projection"};
      result.emplace_back(std::string{to_view(key)},
                          get_be64(static_cast<const char*>(val.mv_data)));
    }
    if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (offsets)");
    return {};
  });
  if (err) return err;
  return result;
}

}  // namespace mnemo::persistence

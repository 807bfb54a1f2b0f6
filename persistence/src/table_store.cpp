#include "mnemo/persistence/table_store.hpp"

#include "lmdb_util.hpp"

namespace mnemo::persistence {

namespace {

// LMDB's compiled-in key limit (MDB_MAXKEYSIZE of liblmdb 0.9).
constexpr size_t lmdb_max_key_size = 511;

// The LMDB key of `key` in `table`: `table NUL key`.
std::string full_key(std::string_view table, std::string_view key) {
  std::string result;
  result.reserve(table.size() + 1 + key.size());
  result.append(table);
  result.push_back('\0');
  result.append(key);
  return result;
}

// `st.check` naming the table; the message is built only on failure (these
// run per read-model update on the writer thread).
error check_op(detail::txn_state& st, int rc, const char* op,
               std::string_view table) {
  if (rc == 0) return {};
  return st.check(
      rc, std::string{op} + " (table '" + table_store::printable(table) + "')");
}

// Returns whether the LMDB key `k` belongs to `table`.
bool in_table(std::string_view k, std::string_view table) noexcept {
  return k.size() > table.size() && k.compare(0, table.size(), table) == 0 &&
         k[table.size()] == '\0';
}

error check_key(std::string_view table, std::string_view key,
                std::string_view what) {
  if (auto err = table_store::check_table_name(table)) return err;
  auto limit = table_store::max_key_size(table);
  if (key.size() > limit)
    return error{errc::invalid_argument,
                 std::string{what} + " of table '" +
                     table_store::printable(table) + "' is " +
                     std::to_string(key.size()) +
                     " bytes long; the limit for this table is " +
                     std::to_string(limit) +
                     " (LMDB's 511 minus the table name and 1); shorten it "
                     "or store a hash of it"};
  return {};
}

// A read-only journal on a directory written before `mnemo.tables` existed
// has no handle for it: every table reads as empty.
bool absent(const detail::txn_state& st) noexcept {
  return st.dbs->tables == 0;
}

// Calls `fn` for the entries of `table` from the user key `from` on while
// `in_range(user_key)` holds, at most `limit` of them.
template <class InRange>
expected<size_t> scan(detail::txn_state& st, std::string_view table,
                      std::string_view from, InRange&& in_range, size_t limit,
                      const table_store::visitor& fn) {
  if (auto err = check_key(table, from, "scan start key")) return err;
  size_t visited = 0;
  if (limit == 0 || absent(st)) return visited;
  cursor cur;
  if (auto err = cur.open(st, st.dbs->tables)) return err;
  auto start = full_key(table, from);
  MDB_val key = to_val(start);
  MDB_val val;
  auto rc = cur.get(key, val, MDB_SET_RANGE);
  for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
    auto k = to_view(key);
    if (!in_table(k, table)) break;
    auto user_key = k.substr(table.size() + 1);
    if (!in_range(user_key)) break;
    ++visited;
    if (!fn(user_key, to_view(val)) || visited == limit) return visited;
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return st.check(rc, "mdb_cursor_get (tables)");
  return visited;
}

}  // namespace

size_t table_store::max_key_size(std::string_view table) noexcept {
  auto used = table.size() + 1;
  return used >= lmdb_max_key_size ? 0 : lmdb_max_key_size - used;
}

error table_store::check_table_name(std::string_view table) {
  if (table.empty())
    return error{errc::invalid_argument, "table name is empty"};
  if (table.size() > max_table_name_size)
    return error{errc::invalid_argument,
                 "table name '" + printable(table) + "' is " +
                     std::to_string(table.size()) +
                     " bytes long; the limit is " +
                     std::to_string(max_table_name_size)};
  if (table.find('\0') != std::string_view::npos)
    return error{errc::invalid_argument,
                 "table name '" + printable(table) + "' contains a NUL byte"};
  return {};
}

error table_store::put_in(write_txn& txn, std::string_view table,
                          std::string_view key, std::string_view value) {
  if (auto err = check_key(table, key, "key")) return err;
  auto& st = txn.state();
  auto k = full_key(table, key);
  auto kv = to_val(k);
  auto vv = to_val(value);
  return check_op(st, mdb_put(st.txn, st.dbs->tables, &kv, &vv, 0), "mdb_put",
                  table);
}

expected<bool> table_store::erase_in(write_txn& txn, std::string_view table,
                                     std::string_view key) {
  if (auto err = check_key(table, key, "key")) return err;
  auto& st = txn.state();
  auto k = full_key(table, key);
  auto kv = to_val(k);
  auto rc = mdb_del(st.txn, st.dbs->tables, &kv, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (auto err = check_op(st, rc, "mdb_del", table)) return err;
  return true;
}

expected<std::optional<std::string>> table_store::get_in(any_txn txn,
                                                         std::string_view table,
                                                         std::string_view key) {
  if (auto err = check_key(table, key, "key")) return err;
  auto& st = txn.state();
  std::optional<std::string> result;
  if (absent(st)) return result;
  auto k = full_key(table, key);
  auto kv = to_val(k);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->tables, &kv, &val);
  if (rc == MDB_NOTFOUND) return result;
  if (auto err = check_op(st, rc, "mdb_get", table)) return err;
  result.emplace(to_view(val));
  return result;
}

expected<size_t> table_store::scan_in(any_txn txn, std::string_view table,
                                      std::string_view from,
                                      std::string_view to, size_t limit,
                                      const visitor& fn) {
  return scan(
      txn.state(), table, from,
      [to](std::string_view k) { return to.empty() || k < to; }, limit, fn);
}

expected<size_t> table_store::scan_prefix_in(any_txn txn,
                                             std::string_view table,
                                             std::string_view prefix,
                                             size_t limit, const visitor& fn) {
  return scan(
      txn.state(), table, prefix,
      [prefix](std::string_view k) {
        return k.compare(0, prefix.size(), prefix) == 0;
      },
      limit, fn);
}

expected<uint64_t> table_store::count_in(any_txn txn, std::string_view table) {
  uint64_t n = 0;
  auto res = scan(
      txn.state(), table, {}, [](std::string_view) { return true; }, unlimited,
      [&n](std::string_view, std::string_view) {
        ++n;
        return true;
      });
  if (!res) return std::move(res).error();
  return n;
}

expected<uint64_t> table_store::clear_some_in(write_txn& txn,
                                              std::string_view table,
                                              uint64_t max_keys) {
  if (auto err = check_table_name(table)) return err;
  auto& st = txn.state();
  uint64_t deleted = 0;
  if (max_keys == 0) return deleted;
  cursor cur;
  if (auto err = cur.open(st, st.dbs->tables)) return err;
  auto start = full_key(table, {});
  MDB_val key = to_val(start);
  MDB_val val;
  auto rc = cur.get(key, val, MDB_SET_RANGE);
  // After mdb_cursor_del the cursor stands on the next entry, which
  // MDB_NEXT then returns without moving.
  for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
    if (!in_table(to_view(key), table)) break;
    if (auto err = check_op(st, cur.del(), "mdb_cursor_del", table)) return err;
    if (++deleted == max_keys) return deleted;
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    return st.check(rc, "mdb_cursor_get (tables)");
  return deleted;
}

expected<uint64_t> table_store::clear_in(write_txn& txn,
                                         std::string_view table) {
  return clear_some_in(txn, table, std::numeric_limits<uint64_t>::max());
}

expected<std::vector<std::string>> table_store::tables_in(any_txn txn) {
  auto& st = txn.state();
  std::vector<std::string> result;
  if (absent(st)) return result;
  cursor cur;
  if (auto err = cur.open(st, st.dbs->tables)) return err;
  MDB_val key;
  MDB_val val;
  std::string next;
  auto rc = cur.get(key, val, MDB_FIRST);
  while (rc == 0) {
    auto k = to_view(key);
    auto end = k.find('\0');
    if (end == std::string_view::npos || end == 0)
      return error{errc::corrupt_record,
                   "corrupt key '" + printable(k) +
                       "' in mnemo.tables (no table name); rebuild the read "
                       "models or restore a backup"};
    result.emplace_back(k.substr(0, end));
    // Every key of this table starts with `name NUL`: the first key at or
    // after `name \x01` belongs to the next table.
    next = result.back();
    next.push_back('\x01');
    key = to_val(next);
    rc = cur.get(key, val, MDB_SET_RANGE);
  }
  if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (tables)");
  return result;
}

std::string table_store::printable(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  constexpr size_t max_shown = 64;
  std::string result;
  for (size_t i = 0; i < bytes.size() && i < max_shown; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      result.push_back(static_cast<char>(c));
    } else {
      result += "\\x";
      result.push_back(hex[c >> 4]);
      result.push_back(hex[c & 0xf]);
    }
  }
  if (bytes.size() > max_shown) result += "...";
  return result;
}

}  // namespace mnemo::persistence

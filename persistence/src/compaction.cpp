// Compaction: rewrites mnemo.streams and mnemo.tables densely, in a child
// transaction of a group commit, when they are small and their pages
// sparse (random inserts leave them about two thirds full).
//
// Owns, of journal::impl (writer thread only): compaction_seen. A failed
// rewrite leaves the database as it was; only a full map fails the commit.

#include <string>
#include <utility>
#include <vector>

#include "journal_impl.hpp"

namespace mnemo::persistence {

namespace {

// Databases considered for compaction: at least this many entries ...
constexpr uint64_t compact_min_entries = 256;
// ... and at most this many pages (4 MiB with 4 KiB pages, rewritten in a
// few milliseconds).
constexpr uint64_t compact_max_pages = 1024;
// LMDB's per-node overhead in a leaf page: the node header and the slot in
// the page's offset array.
constexpr size_t lmdb_node_overhead = 8 + 2;
constexpr size_t lmdb_page_header = 16;

// The contents of a database, read for a dense rewrite: one buffer for all
// keys and values, with their sizes alongside.
struct db_copy {
  std::string bytes;
  std::vector<std::pair<size_t, size_t>> sizes;
};

// Calls `f(key, value)` for every entry of `dbi` in key order.
template <class F>
int for_each_entry(MDB_txn* txn, MDB_dbi dbi, F&& f) {
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(txn, dbi, &cur)) return rc;
  MDB_val key;
  MDB_val val;
  int rc = 0;
  while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) f(key, val);
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

// Returns whether `dbi` is worth a dense rewrite, with its contents in
// `copy`: it has grown by a quarter since `seen`, is small, holds no
// overflow pages, and its leaf pages are less than three quarters full.
int worth_compacting(MDB_txn* txn, MDB_dbi dbi, uint64_t& seen, db_copy& copy,
                     bool& worth) {
  worth = false;
  MDB_stat ms;
  if (auto rc = mdb_stat(txn, dbi, &ms)) return rc;
  if (ms.ms_entries < compact_min_entries || ms.ms_entries * 4 < seen * 5)
    return 0;
  seen = ms.ms_entries;
  if (ms.ms_overflow_pages > 0 ||
      ms.ms_branch_pages + ms.ms_leaf_pages > compact_max_pages)
    return 0;
  // Sizes first; the copy only for a database that is worth rewriting.
  size_t node_bytes = 0;
  auto rc =
      for_each_entry(txn, dbi, [&](const MDB_val& key, const MDB_val& val) {
        node_bytes +=
            lmdb_node_overhead + ((key.mv_size + val.mv_size + 1) & ~size_t{1});
      });
  if (rc != 0) return rc;
  auto dense = node_bytes / (ms.ms_psize - lmdb_page_header) + 1;
  worth = dense * 4 <= ms.ms_leaf_pages * 3;
  if (!worth) return 0;
  copy.sizes.reserve(ms.ms_entries);
  return for_each_entry(txn, dbi, [&](const MDB_val& key, const MDB_val& val) {
    copy.bytes.append(static_cast<const char*>(key.mv_data), key.mv_size);
    copy.bytes.append(static_cast<const char*>(val.mv_data), val.mv_size);
    copy.sizes.emplace_back(key.mv_size, val.mv_size);
  });
}

// Empties `dbi` and writes `copy` back in key order with MDB_APPEND, which
// fills every page.
int rewrite_dense(MDB_txn* txn, MDB_dbi dbi, const db_copy& copy) {
  if (auto rc = mdb_drop(txn, dbi, 0)) return rc;
  size_t at = 0;
  for (auto [ksize, vsize] : copy.sizes) {
    auto* data = const_cast<char*>(copy.bytes.data()) + at;
    MDB_val k{ksize, data};
    MDB_val v{vsize, data + ksize};
    if (auto rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND)) return rc;
    at += ksize + vsize;
  }
  return 0;
}

}  // namespace

int journal::impl::compact_sparse(detail::txn_state& st) {
  // Both are written by random inserts, which split full pages in halves:
  // they end up about two thirds full, and a group commit that updates a
  // few dozen of their rows rewrites about as many pages. Dense pages mean
  // fewer of them per commit, and fewer bytes for its fsync.
  MDB_dbi dbis[2] = {dbs.streams, dbs.tables};
  for (size_t i = 0; i < 2; ++i) {
    db_copy copy;
    bool worth = false;
    auto rc =
        worth_compacting(st.txn, dbis[i], compaction_seen[i], copy, worth);
    if (rc == 0 && worth) {
      // In a child transaction: a failure leaves the database as it was.
      MDB_txn* child = nullptr;
      rc = mdb_txn_begin(env, st.txn, 0, &child);
      if (rc == 0) {
        rc = rewrite_dense(child, dbis[i], copy);
        if (rc == 0)
          rc = mdb_txn_commit(child);
        else
          mdb_txn_abort(child);
      }
      if (rc == 0) stats.compactions.fetch_add(1, std::memory_order_relaxed);
    }
    // A full map grows and the whole commit is retried; any other failure
    // only skips the rewrite.
    if (rc == MDB_MAP_FULL) return rc;
  }
  return 0;
}

}  // namespace mnemo::persistence

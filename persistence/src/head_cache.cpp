// The writer's cache of stream heads and its use of mnemo.head_log
// (docs/format.md 2.3, head_log.hpp): heads are loaded on a miss, changed
// as `pending` during a transaction and settled after it; a commit stores
// the changed heads as one head log record, or folds the log and them into
// mnemo.streams every few dozen commits (and at close).
//
// Owns, of journal::impl (writer thread only): heads, dirty_heads,
// sorted_heads, logged_heads, log_in_cache, log_records, log_entries,
// pending_heads, fold_cached, fold_heads_map, fold_order. Invariants: a
// cached `committed` head equals the stream's head on disk; `log_records`
// and `log_entries` count the committed head log; while `log_in_cache`
// holds, `logged_heads` are all of the log's streams.

#include <algorithm>
#include <cstring>
#include <mutex>

#include "head_log.hpp"
#include "journal_impl.hpp"
#include "mnemo/persistence/table_store.hpp"

namespace mnemo::persistence {

namespace {

constexpr size_t max_cached_heads = 100000;
// The head log is folded into mnemo.streams before it has more records or
// entries than these: a head lookup reads at most this many records, and a
// fold writes at most this many heads.
constexpr uint64_t max_log_records = 32;
constexpr uint64_t max_log_entries = 16384;

// Writes `n` heads into `dbi` (mnemo.streams); `next(i)` returns the stream
// id and head of the `i`-th, in key order. In key order through one cursor:
// LMDB then finds most keys on the leaf page the cursor is already on
// instead of searching from the root.
template <class Next>
int put_heads(MDB_txn* txn, MDB_dbi dbi, size_t n, Next&& next) {
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(txn, dbi, &cur)) return rc;
  char buf[24];
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; ++i) {
    const auto& [stream, head] = next(i);
    encode_head(head, buf);
    MDB_val key = to_val(stream);
    MDB_val val{24, buf};
    rc = mdb_cursor_put(cur, &key, &val, 0);
  }
  mdb_cursor_close(cur);
  return rc;
}

}  // namespace

int journal::impl::load_head(detail::txn_state& st, const std::string& stream,
                             cached_head*& out, error& err) {
  if (auto i = heads.find(stream); i != heads.end()) {
    out = &i->second;
    return 0;
  }
  head_record value;
  if (auto read_err = read_head(st, stream, value)) {
    if (st.fatal_rc != 0) return st.fatal_rc;
    // A damaged head fails its own request; the others commit.
    err = std::move(read_err);
    return 0;
  }
  if (value.highest > 0) {
    // Only a stream that exists can have moved away.
    write_txn txn{st};
    auto moved = table_store::get_in(txn, moved_table, stream);
    if (st.fatal_rc != 0) return st.fatal_rc;
    if (!moved) {
      err = moved.error();
      return 0;
    }
    value.moved = moved->has_value();
  }
  auto& [key, entry] = *heads.emplace(stream, cached_head{value, value}).first;
  entry.stream = &key;
  char prefix[16] = {};
  std::memcpy(prefix, key.data(), std::min<size_t>(key.size(), 16));
  entry.order[0] = get_be64(prefix);
  entry.order[1] = get_be64(prefix + 8);
  out = &entry;
  return 0;
}

void journal::impl::store_head(cached_head& entry, const head_record& value) {
  if (!entry.dirty) {
    entry.dirty = true;
    dirty_heads.push_back(&entry);
  }
  entry.pending = value;
}

void journal::impl::settle_heads(bool committed) {
  for (auto* entry : dirty_heads) {
    if (committed)
      entry->committed = entry->pending;
    else
      entry->pending = entry->committed;
    entry->dirty = false;
  }
  dirty_heads.clear();
  // Bound the cache between transactions; a miss costs one lookup. The
  // log's streams are then no longer all in the cache.
  if (heads.size() > max_cached_heads) {
    heads.clear();
    logged_heads.clear();
    log_in_cache = log_records == 0;
  }
}

void journal::impl::note_head_write() {
  if (pending_heads == head_write::logged) {
    ++log_records;
    log_entries += sorted_heads.size();
    if (!log_in_cache) return;
    for (auto& item : sorted_heads) {
      if (item.entry->logged) continue;
      item.entry->logged = true;
      logged_heads.push_back(item.entry);
    }
  } else if (pending_heads == head_write::folded) {
    if (log_records > 0)
      stats.head_folds.fetch_add(1, std::memory_order_relaxed);
    log_records = log_entries = 0;
    for (auto* entry : logged_heads) entry->logged = false;
    logged_heads.clear();
    log_in_cache = true;
  }
}

namespace {

// Sorts heads by stream. The sort compares the cached 16-byte prefixes and
// only reads the keys of entries whose prefixes are equal.
template <class Order>
void sort_by_stream(std::vector<Order>& v) {
  std::sort(v.begin(), v.end(), [](const Order& a, const Order& b) {
    if (a.hi != b.hi) return a.hi < b.hi;
    if (a.lo != b.lo) return a.lo < b.lo;
    return *a.entry->stream < *b.entry->stream;  // memcmp order
  });
}

}  // namespace

void journal::impl::sort_dirty_heads() {
  sorted_heads.clear();
  for (auto* entry : dirty_heads)
    sorted_heads.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(sorted_heads);
}

int journal::impl::store_heads(detail::txn_state& st, uint64_t last_position) {
  pending_heads = head_write::none;
  if (dirty_heads.empty()) return 0;
  sort_dirty_heads();
  if (last_position != 0 && log_records < max_log_records &&
      log_entries + sorted_heads.size() <= max_log_entries) {
    pending_heads = head_write::logged;
    return log_heads(st, last_position);
  }
  pending_heads = head_write::folded;
  return log_records == 0 ? flush_heads(st) : fold_heads(st);
}

int journal::impl::flush_heads(detail::txn_state& st) {
  return put_heads(st.txn, dbs.streams, sorted_heads.size(),
                   [this](size_t i) { return sorted_head(i); });
}

int journal::impl::log_heads(detail::txn_state& st, uint64_t last_position) {
  size_t id_bytes = 0;
  for (auto& item : sorted_heads) id_bytes += item.entry->stream->size();
  be64_key pkey{last_position};
  MDB_val key = pkey.val();
  MDB_val val{head_log_size(sorted_heads.size(), id_bytes), nullptr};
  if (auto rc =
          mdb_put(st.txn, dbs.head_log, &key, &val, MDB_APPEND | MDB_RESERVE))
    return rc;
  encode_head_log(static_cast<char*>(val.mv_data), sorted_heads.size(),
                  [this](size_t k) { return sorted_head(k); });
  return 0;
}

int journal::impl::fold_cached_heads(detail::txn_state& st) {
  // Pending heads: the committed ones for streams this commit leaves alone.
  fold_cached.clear();
  for (auto* entry : logged_heads)
    fold_cached.push_back({entry->order[0], entry->order[1], entry});
  for (auto* entry : dirty_heads)
    if (!entry->logged)
      fold_cached.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(fold_cached);
  auto rc =
      put_heads(st.txn, dbs.streams, fold_cached.size(), [this](size_t i) {
        auto* entry = fold_cached[i].entry;
        return std::pair<std::string_view, const head_record&>{*entry->stream,
                                                               entry->pending};
      });
  if (rc != 0) return rc;
  return mdb_drop(st.txn, dbs.head_log, 0);
}

int journal::impl::fold_heads(detail::txn_state& st) {
  if (log_in_cache) return fold_cached_heads(st);
  // The newest head per stream: the changed ones, then the log's records
  // newest first. The stream ids point into the log's pages, which stay
  // mapped and unchanged until the log is emptied at the end.
  auto& newest = fold_heads_map;
  newest.clear();
  for (auto* entry : dirty_heads)
    newest.emplace(*entry->stream, entry->pending);
  uint64_t position = 0;
  auto rc = collect_head_log(st.txn, dbs.head_log, position, newest);
  if (rc == MDB_CORRUPTED) commit_error = damaged_head_log(position);
  if (rc != 0) return rc;
  fold_order.clear();
  for (auto& item : newest) fold_order.push_back(&item);
  std::sort(fold_order.begin(), fold_order.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  rc = put_heads(st.txn, dbs.streams, fold_order.size(), [this](size_t i) {
    return std::pair<std::string_view, const head_record&>{
        fold_order[i]->first, fold_order[i]->second};
  });
  if (rc != 0) return rc;
  return mdb_drop(st.txn, dbs.head_log, 0);
}

error journal::impl::count_head_log() {
  return with_read([this](detail::txn_state& st) -> error {
    cursor cur;
    if (auto err = cur.open(st, dbs.head_log)) return err;
    MDB_val key;
    MDB_val val;
    int rc = cur.get(key, val, MDB_FIRST);
    for (; rc == 0; rc = cur.get(key, val, MDB_NEXT)) {
      // A damaged record counts as one entry; folding it reports it.
      head_log_entries rec{static_cast<const char*>(val.mv_data), val.mv_size};
      ++log_records;
      log_entries += rec.parse() ? rec.count : 1;
    }
    if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (head log)");
    // The first fold reads a log left by an earlier process.
    log_in_cache = log_records == 0;
    return {};
  });
}

void journal::impl::fold_head_log_at_close() {
  if (log_records == 0) return;
  {
    std::lock_guard<std::mutex> guard{mtx};
    if (sticky) return;
  }
  // Not needed for correctness (the log is part of the format): it leaves
  // a closed directory with every head in mnemo.streams. A failure leaves
  // the log as it was.
  for (int attempt = 0; attempt < 2; ++attempt) {
    detail::txn_state st;
    st.dbs = &dbs;
    if (mdb_txn_begin(env, nullptr, 0, &st.txn) != 0) return;
    auto rc = fold_heads(st);
    if (rc == 0)
      rc = mdb_txn_commit(st.txn);
    else
      mdb_txn_abort(st.txn);
    if (rc == 0) {
      pending_heads = head_write::folded;
      note_head_write();
      return;
    }
    commit_error = {};
    if (rc != MDB_MAP_FULL || !grow_map()) return;
  }
}
}  // namespace mnemo::persistence

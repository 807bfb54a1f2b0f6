// The writer's cache of stream heads and its use of mnemo.head_log
// (docs/format.md 2.3, head_log.hpp): heads are loaded on a miss, changed
// as `pending` during a transaction and settled after it; a commit stores
// the changed heads as one head log record, or folds the log and them into
// mnemo.streams every few dozen commits (and at close).
//
// Owns, of journal::impl (writer thread only): `heads` (head_cache.hpp,
// with its invariants). Sets `commit_error` for a damaged head log record
// found while folding.

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
  if (auto i = heads.entries.find(stream); i != heads.entries.end()) {
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
  auto& [key, entry] =
      *heads.entries.emplace(stream, cached_head{value, value}).first;
  entry.stream = &key;
  char prefix[16] = {};
  std::memcpy(prefix, key.data(), std::min<size_t>(key.size(), 16));
  entry.order[0] = get_be64(prefix);
  entry.order[1] = get_be64(prefix + 8);
  out = &entry;
  return 0;
}

void head_cache::store(cached_head& entry, const head_record& value) {
  if (!entry.dirty) {
    entry.dirty = true;
    dirty.push_back(&entry);
  }
  entry.pending = value;
}

void head_cache::settle(bool committed) {
  for (auto* entry : dirty) {
    if (committed)
      entry->committed = entry->pending;
    else
      entry->pending = entry->committed;
    entry->dirty = false;
  }
  dirty.clear();
  // Bound the cache between transactions; a miss costs one lookup. The
  // log's streams are then no longer all in the cache.
  if (entries.size() > max_cached_heads) {
    entries.clear();
    logged.clear();
    log_in_cache = log_records == 0;
  }
}

void journal::impl::note_head_write() {
  if (heads.pending_write == head_write::logged) {
    ++heads.log_records;
    heads.log_entries += heads.sorted.size();
    if (!heads.log_in_cache) return;
    for (auto& item : heads.sorted) {
      if (item.entry->logged) continue;
      item.entry->logged = true;
      heads.logged.push_back(item.entry);
    }
  } else if (heads.pending_write == head_write::folded) {
    if (heads.log_records > 0)
      stats.head_folds.fetch_add(1, std::memory_order_relaxed);
    heads.log_records = heads.log_entries = 0;
    for (auto* entry : heads.logged) entry->logged = false;
    heads.logged.clear();
    heads.log_in_cache = true;
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

void head_cache::sort_dirty() {
  sorted.clear();
  for (auto* entry : dirty)
    sorted.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(sorted);
}

int journal::impl::store_heads(detail::txn_state& st, uint64_t last_position) {
  heads.pending_write = head_write::none;
  if (heads.dirty.empty()) return 0;
  heads.sort_dirty();
  if (last_position != 0 && heads.log_records < max_log_records &&
      heads.log_entries + heads.sorted.size() <= max_log_entries) {
    heads.pending_write = head_write::logged;
    return log_heads(st, last_position);
  }
  heads.pending_write = head_write::folded;
  return heads.log_records == 0 ? flush_heads(st) : fold_heads(st);
}

int journal::impl::flush_heads(detail::txn_state& st) {
  return put_heads(st.txn, dbs.streams, heads.sorted.size(),
                   [this](size_t i) { return heads.sorted_head(i); });
}

int journal::impl::log_heads(detail::txn_state& st, uint64_t last_position) {
  size_t id_bytes = 0;
  for (auto& item : heads.sorted) id_bytes += item.entry->stream->size();
  be64_key pkey{last_position};
  MDB_val key = pkey.val();
  MDB_val val{head_log_size(heads.sorted.size(), id_bytes), nullptr};
  if (auto rc =
          mdb_put(st.txn, dbs.head_log, &key, &val, MDB_APPEND | MDB_RESERVE))
    return rc;
  encode_head_log(static_cast<char*>(val.mv_data), heads.sorted.size(),
                  [this](size_t k) { return heads.sorted_head(k); });
  return 0;
}

int journal::impl::fold_cached_heads(detail::txn_state& st) {
  // Pending heads: the committed ones for streams this commit leaves alone.
  heads.fold_cached.clear();
  for (auto* entry : heads.logged)
    heads.fold_cached.push_back({entry->order[0], entry->order[1], entry});
  for (auto* entry : heads.dirty)
    if (!entry->logged)
      heads.fold_cached.push_back({entry->order[0], entry->order[1], entry});
  sort_by_stream(heads.fold_cached);
  auto rc = put_heads(st.txn, dbs.streams, heads.fold_cached.size(),
                      [this](size_t i) {
                        auto* entry = heads.fold_cached[i].entry;
                        return std::pair<std::string_view, const head_record&>{
                            *entry->stream, entry->pending};
                      });
  if (rc != 0) return rc;
  return mdb_drop(st.txn, dbs.head_log, 0);
}

int journal::impl::fold_heads(detail::txn_state& st) {
  if (heads.log_in_cache) return fold_cached_heads(st);
  // The newest head per stream: the changed ones, then the log's records
  // newest first. The stream ids point into the log's pages, which stay
  // mapped and unchanged until the log is emptied at the end.
  auto& newest = heads.fold_map;
  newest.clear();
  for (auto* entry : heads.dirty)
    newest.emplace(*entry->stream, entry->pending);
  uint64_t position = 0;
  auto rc = collect_head_log(st.txn, dbs.head_log, position, newest);
  if (rc == MDB_CORRUPTED) commit_error = damaged_head_log(position);
  if (rc != 0) return rc;
  heads.fold_order.clear();
  for (auto& item : newest) heads.fold_order.push_back(&item);
  std::sort(heads.fold_order.begin(), heads.fold_order.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  rc =
      put_heads(st.txn, dbs.streams, heads.fold_order.size(), [this](size_t i) {
        return std::pair<std::string_view, const head_record&>{
            heads.fold_order[i]->first, heads.fold_order[i]->second};
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
      ++heads.log_records;
      heads.log_entries += rec.parse() ? rec.count : 1;
    }
    if (rc != MDB_NOTFOUND) return st.check(rc, "mdb_cursor_get (head log)");
    // The first fold reads a log left by an earlier process.
    heads.log_in_cache = heads.log_records == 0;
    return {};
  });
}

void journal::impl::fold_head_log_at_close() {
  if (heads.log_records == 0) return;
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
      heads.pending_write = head_write::folded;
      note_head_write();
      return;
    }
    commit_error = {};
    if (rc != MDB_MAP_FULL || !grow_map()) return;
  }
}

}  // namespace mnemo::persistence

// The journal as one replica of a shard's log (replica_log.hpp): shipping
// records as stored, applying them at the same positions through the group
// commit, the epoch history and the promise in mnemo.meta, and truncation
// back to a position. docs/replication.md describes the protocol around it;
// docs/format.md (2.1) the keys.

#include "mnemo/persistence/replica_log.hpp"

#include <algorithm>
#include <future>
#include <unordered_map>

#include "journal_impl.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/persistence/transaction.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

namespace {

// mnemo.meta keys: "epoch" be64(epoch) -> be64(start position), and
// "promised_epoch" -> be64(epoch).
constexpr std::string_view epoch_prefix = "epoch";
constexpr std::string_view promised_key = "promised_epoch";

std::string epoch_key(uint64_t epoch) {
  std::string key{epoch_prefix};
  key.resize(epoch_prefix.size() + 8);
  put_be64(key.data() + epoch_prefix.size(), epoch);
  return key;
}

bool is_epoch_key(std::string_view key) noexcept {
  return key.size() == epoch_prefix.size() + 8 &&
         key.compare(0, epoch_prefix.size(), epoch_prefix) == 0;
}

error read_epochs(detail::txn_state& st, std::vector<epoch_start>& out) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->meta)) return err;
  auto first = epoch_key(0);
  MDB_val key = to_val(first);
  MDB_val val;
  for (auto rc = cur.get(key, val, MDB_SET_RANGE); rc != MDB_NOTFOUND;
       rc = cur.get(key, val, MDB_NEXT)) {
    if (auto err = st.check(rc, "mdb_cursor_get (epochs)")) return err;
    auto k = to_view(key);
    if (!is_epoch_key(k)) break;
    if (val.mv_size != 8)
      return error{errc::corrupt_record,
                   "corrupt journal: an epoch entry of mnemo.meta is not 8 "
                   "bytes; restore the data directory from a backup"};
    out.push_back(epoch_start{get_be64(k.data() + epoch_prefix.size()),
                              get_be64(static_cast<const char*>(val.mv_data))});
  }
  return {};
}

error read_promise(detail::txn_state& st, uint64_t& out) {
  out = 0;
  MDB_val key = to_val(promised_key);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->meta, &key, &val);
  if (rc == MDB_NOTFOUND) return {};
  if (auto err = st.check(rc, "mdb_get (promised epoch)")) return err;
  if (val.mv_size != 8)
    return error{errc::corrupt_record,
                 "corrupt journal: mnemo.meta promised_epoch is not 8 bytes"};
  out = get_be64(static_cast<const char*>(val.mv_data));
  return {};
}

int put_u64(detail::txn_state& st, std::string_view k, uint64_t v) {
  be64_key value{v};
  MDB_val key = to_val(k);
  MDB_val val = value.val();
  return mdb_put(st.txn, st.dbs->meta, &key, &val, 0);
}

template <class F>
error blocking(F&& submit) {
  std::promise<error> promise;
  auto future = promise.get_future();
  submit([&promise](error err) { promise.set_value(std::move(err)); });
  return future.get();
}

// Stream, sequence, back link, id and tags of a record being applied.
struct applied_record {
  std::string_view bytes;
  event_envelope env;
  uint64_t previous = 0;
};

}  // namespace

size_t log_batch::bytes() const noexcept {
  size_t n = 0;
  for (auto& r : records) n += r.size();
  return n;
}

// -- writer side ---------------------------------------------------------------

int journal::impl::apply(detail::txn_state& st, replica_request& req,
                         outcome& out, uint64_t& next_position, int64_t) {
  using kind = replica_request::kind;
  if (req.what == kind::truncate)
    return truncate(st, req, out, next_position, commit_first_position);
  uint64_t promised = 0;
  std::vector<epoch_start> history;
  if (auto err = read_promise(st, promised)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  if (auto err = read_epochs(st, history)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  auto newest = history.empty() ? 0 : history.back().epoch;
  if (req.what == kind::begin_epoch) {
    if (req.leader_epoch <= newest || req.leader_epoch <= promised) {
      out = error{errc::stale_epoch,
                  "cannot begin epoch " + std::to_string(req.leader_epoch) +
                      ": this log already has epoch " + std::to_string(newest) +
                      " and promised " + std::to_string(promised)};
      return 0;
    }
    if (auto rc = put_u64(st, epoch_key(req.leader_epoch), next_position))
      return rc;
    return put_u64(st, promised_key, req.leader_epoch);
  }
  if (req.leader_epoch < promised) {
    out = error{errc::stale_epoch,
                "refused a replicated batch of epoch " +
                    std::to_string(req.leader_epoch) +
                    ": this replica follows epoch " + std::to_string(promised)};
    return 0;
  }
  if (!req.records.empty()) {
    if (req.records_epoch > req.leader_epoch || req.records_epoch == 0) {
      out = error{errc::stale_epoch,
                  "a replicated batch of records of epoch " +
                      std::to_string(req.records_epoch) +
                      " cannot come from the leader of epoch " +
                      std::to_string(req.leader_epoch)};
      return 0;
    }
    if (req.records_epoch < newest) {
      out = error{errc::log_mismatch,
                  "a replicated batch of epoch " +
                      std::to_string(req.records_epoch) +
                      " cannot follow records of epoch " +
                      std::to_string(newest) + "; truncate first"};
      return 0;
    }
    if (req.position != next_position) {
      out = error{errc::log_mismatch,
                  "a replicated batch starts at position " +
                      std::to_string(req.position) +
                      " but this log ends at " +
                      std::to_string(next_position - 1)};
      return 0;
    }
    if (auto rc = apply_records(st, req, out, next_position)) return rc;
    if (std::get<error>(out)) return 0;
    if (req.records_epoch > newest)
      if (auto rc = put_u64(st, epoch_key(req.records_epoch), req.position))
        return rc;
  }
  if (req.leader_epoch > promised)
    return put_u64(st, promised_key, req.leader_epoch);
  return 0;
}

int journal::impl::apply_records(detail::txn_state& st, replica_request& req,
                                 outcome& out, uint64_t& next_position) {
  // First check every record against the heads (as this batch changes
  // them), then write: a refused batch writes nothing.
  std::vector<applied_record> recs(req.records.size());
  std::unordered_map<std::string_view, head_record> heads_seen;
  msgpack::zone zone;
  for (size_t i = 0; i < recs.size(); ++i) {
    auto& r = recs[i];
    auto pos = req.position + i;
    r.bytes = req.records[i];
    if (auto err =
            decode_event(r.bytes, record_origin{{}, 0, pos}, zone, r.env)) {
      out = error{err.code(),
                  "a replicated record is damaged: " + err.message()};
      return 0;
    }
    r.previous = get_be64(r.bytes.data() + 21);
    auto i_head = heads_seen.find(r.env.stream_id);
    if (i_head == heads_seen.end()) {
      cached_head* entry = nullptr;
      error head_err;
      if (auto rc = load_head(st, r.env.stream_id, entry, head_err)) return rc;
      if (head_err) {
        out = std::move(head_err);
        return 0;
      }
      i_head = heads_seen.emplace(*entry->stream, entry->pending).first;
    }
    auto& h = i_head->second;
    if (r.env.sequence != h.highest + 1 || r.previous != h.last_position) {
      out = error{errc::log_mismatch,
                  "the replicated record at position " + std::to_string(pos) +
                      " (stream '" + r.env.stream_id + "', sequence " +
                      std::to_string(r.env.sequence) + ", previous event at " +
                      std::to_string(r.previous) +
                      ") does not continue its stream here (sequence " +
                      std::to_string(h.highest) + " at position " +
                      std::to_string(h.last_position) + ")"};
      return 0;
    }
    h.highest = r.env.sequence;
    h.last_position = pos;
  }
  for (size_t i = 0; i < recs.size(); ++i) {
    auto& r = recs[i];
    auto pos = next_position++;
    be64_key pkey{pos};
    MDB_val key = pkey.val();
    MDB_val val{r.bytes.size(), const_cast<char*>(r.bytes.data())};
    if (auto rc = mdb_cursor_put(events_cursor, &key, &val, MDB_APPEND))
      return rc;
    auto& stream = r.env.stream_id;
    auto seq = r.env.sequence;
    if (seq % checkpoint_interval == 0) {
      auto ikey_bytes = name_key(stream, seq);
      MDB_val ikey = to_val(ikey_bytes);
      MDB_val ival = pkey.val();
      if (auto rc = mdb_put(st.txn, dbs.stream_index, &ikey, &ival, 0))
        return rc;
    }
    char idv[16 + max_name_size];
    put_be64(idv, pos);
    put_be64(idv + 8, seq);
    std::memcpy(idv + 16, stream.data(), stream.size());
    MDB_val idkey{16, r.env.id.bytes.data()};
    MDB_val idval{16 + stream.size(), idv};
    if (auto rc = put_event_id(idkey, idval)) return rc;
    for (auto& tag : r.env.tags) {
      auto tkey_bytes = name_key(tag, pos);
      MDB_val tkey = to_val(tkey_bytes);
      MDB_val empty{0, nullptr};
      if (auto rc = mdb_put(st.txn, dbs.tags, &tkey, &empty, 0)) return rc;
    }
  }
  for (auto& [stream, h] : heads_seen) {
    cached_head* entry = nullptr;
    error head_err;
    if (auto rc = load_head(st, std::string{stream}, entry, head_err))
      return rc;
    auto value = entry->pending;
    value.highest = h.highest;
    value.last_position = h.last_position;
    store_head(*entry, value);
  }
  return 0;
}

int journal::impl::truncate(detail::txn_state& st, replica_request& req,
                            outcome& out, uint64_t& next_position,
                            uint64_t first_position) {
  auto keep = req.position;
  if (keep + 1 >= next_position) return 0;  // nothing past it
  if (next_position != first_position) {
    out = error{errc::invalid_argument,
                "a truncation cannot share a group commit with appends "
                "before it; retry it"};
    return 0;
  }
  // Newest first, so that the last head seen of a stream is its oldest
  // removed record's: the stream goes back to that record's predecessor.
  struct removed {
    uint64_t pos;
    uint64_t seq;
    uint64_t previous;
    std::string stream;
    std::vector<std::string> tags;
    event_id id;
  };
  std::vector<removed> doomed;
  {
    cursor cur;
    if (auto err = cur.open(st, dbs.events)) {
      out = std::move(err);
      return st.fatal_rc;
    }
    be64_key start{keep + 1};
    MDB_val key = start.val();
    MDB_val rec;
    msgpack::zone zone;
    for (auto rc = cur.get(key, rec, MDB_SET_RANGE); rc != MDB_NOTFOUND;
         rc = cur.get(key, rec, MDB_NEXT)) {
      if (rc != 0) return rc;
      auto pos = get_be64(static_cast<const char*>(key.mv_data));
      event_envelope env;
      if (auto err =
              decode_event(to_view(rec), record_origin{{}, 0, pos}, zone, env)) {
        out = std::move(err);
        return 0;
      }
      doomed.push_back(removed{pos, env.sequence,
                               get_be64(static_cast<const char*>(rec.mv_data) +
                                        21),
                               std::move(env.stream_id), std::move(env.tags),
                               env.id});
    }
  }
  std::unordered_map<std::string, head_record> new_heads;
  for (auto i = doomed.rbegin(); i != doomed.rend(); ++i) {
    auto& h = new_heads[i->stream];
    h.highest = i->seq - 1;
    h.last_position = i->previous;
  }
  for (auto& [stream, h] : new_heads) {
    cached_head* entry = nullptr;
    error head_err;
    if (auto rc = load_head(st, stream, entry, head_err)) return rc;
    if (head_err) {
      out = std::move(head_err);
      return 0;
    }
    auto value = entry->pending;
    if (value.deleted_to > h.highest) {
      out = error{errc::invalid_argument,
                  "cannot truncate after position " + std::to_string(keep) +
                      ": events of stream '" + stream +
                      "' were deleted past it (a replica log takes no "
                      "deletions)"};
      return 0;
    }
    value.highest = h.highest;
    value.last_position = h.last_position;
    store_head(*entry, value);
    write_txn txn{st};
    snapshot_criteria past;
    past.min_sequence = h.highest + 1;
    if (auto err = snapshot_store::remove_in(txn, stream, past)) {
      out = std::move(err);
      return st.fatal_rc;
    }
  }
  for (auto& d : doomed) {
    for (auto& tag : d.tags) {
      auto tkey_bytes = name_key(tag, d.pos);
      MDB_val tkey = to_val(tkey_bytes);
      auto rc = mdb_del(st.txn, dbs.tags, &tkey, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    MDB_val idkey{16, d.id.bytes.data()};
    if (auto rc = mdb_del(st.txn, dbs.event_ids, &idkey, nullptr);
        rc != 0 && rc != MDB_NOTFOUND)
      return rc;
    be64_key pkey{d.pos};
    MDB_val key = pkey.val();
    if (auto rc = mdb_del(st.txn, dbs.events, &key, nullptr)) return rc;
    if (d.seq % legacy_checkpoint_interval == 0) {
      auto ikey_bytes = name_key(d.stream, d.seq);
      MDB_val ikey = to_val(ikey_bytes);
      auto rc = mdb_del(st.txn, dbs.stream_index, &ikey, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
  }
  // Epochs that start past the kept records leave the history.
  std::vector<epoch_start> history;
  if (auto err = read_epochs(st, history)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  for (auto& e : history) {
    if (e.start_position <= keep) continue;
    auto k = epoch_key(e.epoch);
    MDB_val key = to_val(k);
    if (auto rc = mdb_del(st.txn, dbs.meta, &key, nullptr)) return rc;
  }
  next_position = keep + 1;
  truncated = true;
  return 0;
}

// -- public --------------------------------------------------------------------

uint64_t replica_log::end_position() const noexcept {
  return journal_->head_position();
}

expected<log_batch> replica_log::read(uint64_t from_position,
                                      size_t max_records,
                                      size_t max_bytes) const {
  log_batch out;
  if (from_position == 0) from_position = 1;
  out.first_position = from_position;
  auto err = journal_->impl_->with_read([&](detail::txn_state& st) -> error {
    std::vector<epoch_start> history;
    if (auto err = read_epochs(st, history)) return err;
    // The epoch of `from_position` and where the next one starts.
    uint64_t stop = UINT64_MAX;
    for (auto& e : history) {
      if (e.start_position <= from_position)
        out.epoch = e.epoch;
      else {
        stop = e.start_position;
        break;
      }
    }
    cursor cur;
    if (auto err = cur.open(st, st.dbs->events)) return err;
    be64_key start{from_position};
    MDB_val key = start.val();
    MDB_val rec;
    size_t bytes = 0;
    auto expect = from_position;
    for (auto rc = cur.get(key, rec, MDB_SET_RANGE);
         rc != MDB_NOTFOUND && out.records.size() < max_records;
         rc = cur.get(key, rec, MDB_NEXT)) {
      if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
      auto pos = get_be64(static_cast<const char*>(key.mv_data));
      if (pos >= stop) break;
      if (pos != expect)
        return error{errc::not_found,
                     "position " + std::to_string(expect) +
                         " of this log was deleted; it cannot be shipped "
                         "from there (copy the shard instead)"};
      if (!out.records.empty() && bytes + rec.mv_size > max_bytes) break;
      out.records.emplace_back(static_cast<const char*>(rec.mv_data),
                               rec.mv_size);
      bytes += rec.mv_size;
      ++expect;
    }
    if (out.records.empty()) out.epoch = 0;
    return {};
  });
  if (err) return err;
  return out;
}

void replica_log::apply(log_batch batch, uint64_t leader_epoch,
                        write_handler done) {
  replica_request req;
  req.what = replica_request::kind::apply;
  req.leader_epoch = leader_epoch;
  req.records_epoch = batch.epoch;
  req.position = batch.first_position;
  req.records = std::move(batch.records);
  req.done = std::move(done);
  journal_->impl_->enqueue(std::move(req));
}

error replica_log::apply(log_batch batch, uint64_t leader_epoch) {
  return blocking([&](write_handler done) {
    apply(std::move(batch), leader_epoch, std::move(done));
  });
}

error replica_log::begin_epoch(uint64_t epoch) {
  return blocking([&](write_handler done) {
    replica_request req;
    req.what = replica_request::kind::begin_epoch;
    req.leader_epoch = epoch;
    req.done = std::move(done);
    journal_->impl_->enqueue(std::move(req));
  });
}

error replica_log::truncate_after(uint64_t position) {
  return blocking([&](write_handler done) {
    replica_request req;
    req.what = replica_request::kind::truncate;
    req.position = position;
    req.done = std::move(done);
    journal_->impl_->enqueue(std::move(req));
  });
}

expected<std::vector<epoch_start>> replica_log::epochs() const {
  std::vector<epoch_start> out;
  if (auto err = journal_->impl_->with_read(
          [&](detail::txn_state& st) { return read_epochs(st, out); }))
    return err;
  return out;
}

expected<uint64_t> replica_log::promised_epoch() const {
  uint64_t out = 0;
  if (auto err = journal_->impl_->with_read(
          [&](detail::txn_state& st) { return read_promise(st, out); }))
    return err;
  return out;
}

namespace {

epoch_end end_in(const std::vector<epoch_start>& history, uint64_t log_end,
                 uint64_t epoch) {
  epoch_end out;
  for (size_t i = 0; i < history.size(); ++i) {
    if (history[i].epoch > epoch) {
      // Ends where the next one starts; a log whose epochs are all newer
      // holds nothing of `epoch` (0, with its first start - 1).
      out.last_position = history[i].start_position - 1;
      return out;
    }
    out.epoch = history[i].epoch;
  }
  out.last_position = history.empty() ? 0 : log_end;
  return out;
}

}  // namespace

expected<epoch_end> replica_log::end_of(uint64_t epoch) const {
  auto history = epochs();
  if (!history) return std::move(history).error();
  return end_in(*history, end_position(), epoch);
}

uint64_t truncation_point(const std::vector<epoch_start>& follower_epochs,
                          uint64_t follower_end,
                          const epoch_end& leader_answer) {
  auto own = end_in(follower_epochs, follower_end, leader_answer.epoch);
  return std::min(own.last_position, leader_answer.last_position);
}

}  // namespace mnemo::persistence

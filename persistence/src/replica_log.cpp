// One shard's log inside a member's journal (replica_log.hpp): the shard
// index that local appends and applied batches extend, shipping records,
// applying them through the group commit, the epoch history and the
// promise in mnemo.meta, and truncation back to a shard position.
// docs/replication.md describes the protocol around it; docs/format.md
// (2.1, 2.10) the keys.

#include "mnemo/persistence/replica_log.hpp"

#include <algorithm>
#include <cstring>
#include <future>
#include <unordered_map>

#include "journal_impl.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/persistence/transaction.hpp"
#include "record_codec.hpp"

namespace mnemo::persistence {

namespace {

// mnemo.shard_log: be32(shard) be64(shard position) -> be64(global
// position). mnemo.meta: "epoch" be32(shard) be64(epoch) -> be64(start
// shard position), and "promised_epoch" be32(shard) -> be64(epoch).
constexpr std::string_view epoch_prefix = "epoch";
constexpr std::string_view promised_prefix = "promised_epoch";
// "learner" be32(shard) -> be64(epoch): this replica's copy of the shard
// must not count in a new leader's majority until a leader of at least that
// epoch brought it up to date (replica_log::learner).
constexpr std::string_view learner_prefix = "learner";
// "committed" be32(shard) -> be64(shard position): the greatest commit
// point of a leader this replica learnt, up to what it held then
// (replica_log::committed).
constexpr std::string_view committed_prefix = "committed";
constexpr size_t back_link_offset = 21;  // record_codec.hpp

void put_be32(char* out, uint32_t x) noexcept {
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(x & 0xff);
    x >>= 8;
  }
}

uint32_t get_be32(const char* in) noexcept {
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i)
    x = (x << 8) | static_cast<uint8_t>(in[i]);
  return x;
}

struct shard_key {
  char bytes[12];
  shard_key(uint32_t shard, uint64_t position) noexcept {
    put_be32(bytes, shard);
    put_be64(bytes + 4, position);
  }
  MDB_val val() noexcept { return MDB_val{sizeof bytes, bytes}; }
};

std::string epoch_key(uint32_t shard, uint64_t epoch) {
  std::string key{epoch_prefix};
  key.resize(epoch_prefix.size() + 12);
  put_be32(key.data() + epoch_prefix.size(), shard);
  put_be64(key.data() + epoch_prefix.size() + 4, epoch);
  return key;
}

std::string promised_key(uint32_t shard) {
  std::string key{promised_prefix};
  key.resize(promised_prefix.size() + 4);
  put_be32(key.data() + promised_prefix.size(), shard);
  return key;
}

std::string committed_key(uint32_t shard) {
  std::string key{committed_prefix};
  key.resize(committed_prefix.size() + 4);
  put_be32(key.data() + committed_prefix.size(), shard);
  return key;
}

std::string learner_key(uint32_t shard) {
  std::string key{learner_prefix};
  key.resize(learner_prefix.size() + 4);
  put_be32(key.data() + learner_prefix.size(), shard);
  return key;
}

error no_shard_log() {
  return error{errc::invalid_argument,
               "this journal keeps no shard logs (opened read-only from a "
               "directory that never had them)"};
}

error read_epochs(detail::txn_state& st, uint32_t shard,
                  std::vector<epoch_start>& out) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->meta)) return err;
  auto first = epoch_key(shard, 0);
  auto prefix = std::string_view{first}.substr(0, epoch_prefix.size() + 4);
  MDB_val key = to_val(first);
  MDB_val val;
  for (auto rc = cur.get(key, val, MDB_SET_RANGE); rc != MDB_NOTFOUND;
       rc = cur.get(key, val, MDB_NEXT)) {
    if (auto err = st.check(rc, "mdb_cursor_get (epochs)")) return err;
    auto k = to_view(key);
    if (k.size() != first.size() || k.substr(0, prefix.size()) != prefix)
      break;
    if (val.mv_size != 8)
      return error{errc::corrupt_record,
                   "corrupt journal: an epoch entry of shard " +
                       std::to_string(shard) +
                       " is not 8 bytes; restore the data directory from a "
                       "backup"};
    out.push_back(epoch_start{get_be64(k.data() + prefix.size()),
                              get_be64(static_cast<const char*>(val.mv_data))});
  }
  return {};
}

// The 8-byte value of meta key `k` into `out` (0 if absent; `sized` false
// if present with another size, `out` then 0). Returns an LMDB code.
int get_u64(detail::txn_state& st, const std::string& k, uint64_t& out,
            bool& sized) {
  out = 0;
  sized = true;
  MDB_val key = to_val(k);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->meta, &key, &val);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  sized = val.mv_size == 8;
  if (sized) out = get_be64(static_cast<const char*>(val.mv_data));
  return 0;
}

error read_promise(detail::txn_state& st, uint32_t shard, uint64_t& out) {
  bool sized = true;
  if (auto err = st.check(get_u64(st, promised_key(shard), out, sized),
                          "mdb_get (promised epoch)"))
    return err;
  if (!sized)
    return error{errc::corrupt_record,
                 "corrupt journal: the promised epoch of shard " +
                     std::to_string(shard) + " is not 8 bytes"};
  return {};
}

// The commit point kept for `shard` (0 if none or malformed: the leaders
// tell it again). Returns an LMDB code.
int read_committed(detail::txn_state& st, uint32_t shard, uint64_t& out) {
  bool sized = true;
  return get_u64(st, committed_key(shard), out, sized);
}

// The newest shard position of `shard` in `st` (0 if none).
int read_shard_end(detail::txn_state& st, uint32_t shard, uint64_t& out) {
  out = 0;
  if (st.dbs->shard_log == 0) return 0;
  MDB_cursor* cur = nullptr;
  if (auto rc = mdb_cursor_open(st.txn, st.dbs->shard_log, &cur)) return rc;
  shard_key after{shard + 1, 0};
  MDB_val key = after.val();
  MDB_val val;
  auto rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
  rc = rc == 0 ? mdb_cursor_get(cur, &key, &val, MDB_PREV)
               : mdb_cursor_get(cur, &key, &val, MDB_LAST);
  if (rc == 0 && key.mv_size == 12 &&
      get_be32(static_cast<const char*>(key.mv_data)) == shard)
    out = get_be64(static_cast<const char*>(key.mv_data) + 4);
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int put_u64(detail::txn_state& st, const std::string& k, uint64_t v) {
  be64_key value{v};
  MDB_val key = to_val(k);
  MDB_val val = value.val();
  return mdb_put(st.txn, st.dbs->meta, &key, &val, 0);
}

// A record as shipped: its back link zeroed, its checksum made again.
std::string portable(std::string_view stored) {
  std::string out{stored};
  auto seq = get_be64(out.data() + 5);
  auto ts = static_cast<int64_t>(get_be64(out.data() + 13));
  seal_record(out.data(), out.size(), event_record_kind, seq, ts, 0);
  return out;
}

}  // namespace

size_t log_batch::bytes() const noexcept {
  size_t n = 0;
  for (auto& r : records) n += r.size();
  return n;
}

// -- writer side ---------------------------------------------------------------

int journal::impl::shard_end(detail::txn_state& st, uint32_t shard,
                             uint64_t& out) {
  if (auto i = shard_ends.pending.find(shard); i != shard_ends.pending.end()) {
    out = i->second;
    return 0;
  }
  if (auto i = shard_ends.committed.find(shard);
      i != shard_ends.committed.end()) {
    out = i->second;
    return 0;
  }
  if (auto rc = read_shard_end(st, shard, out)) return rc;
  shard_ends.committed.emplace(shard, out);
  return 0;
}

int journal::impl::check_shard_epoch(detail::txn_state& st, uint32_t shard,
                                     uint64_t epoch, outcome& out) {
  uint64_t promised = 0;
  std::vector<epoch_start> history;
  if (auto err = read_promise(st, shard, promised)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  if (auto err = read_epochs(st, shard, history)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  auto newest = history.empty() ? 0 : history.back().epoch;
  if (newest != epoch || promised > epoch)
    out = error{errc::not_leader,
                "shard " + std::to_string(shard) + " is no longer led in epoch " +
                    std::to_string(epoch) + " here (its newest epoch is " +
                    std::to_string(newest) + ", promised " +
                    std::to_string(promised) + "); nothing was written"};
  return 0;
}

int journal::impl::put_shard_entry(detail::txn_state& st, uint32_t shard,
                                   uint64_t position) {
  uint64_t end = 0;
  if (auto rc = shard_end(st, shard, end)) return rc;
  shard_key k{shard, end + 1};
  be64_key v{position};
  MDB_val key = k.val();
  MDB_val val = v.val();
  if (auto rc = mdb_put(st.txn, dbs.shard_log, &key, &val, 0)) return rc;
  shard_ends.pending[shard] = end + 1;
  return 0;
}

void journal::impl::settle_shards(bool committed) {
  if (committed)
    for (auto& [shard, end] : shard_ends.pending)
      shard_ends.committed[shard] = end;
  shard_ends.pending.clear();
  shard_ends.appended.clear();
}

int journal::impl::apply(detail::txn_state& st, replica_request& req,
                         outcome& out, uint64_t& next_position, int64_t) {
  using kind = replica_request::kind;
  if (dbs.shard_log == 0) {
    out = no_shard_log();
    return 0;
  }
  if (req.what == kind::set_learner) {
    for (size_t i = 0; i < req.shards.size(); ++i) {
      auto k = learner_key(req.shards[i]);
      int rc = 0;
      if (req.learner) {
        rc = put_u64(st, k, i < req.epochs.size() ? req.epochs[i] : 0);
      } else {
        MDB_val key = to_val(k);
        rc = mdb_del(st.txn, dbs.meta, &key, nullptr);
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  }
  uint64_t end = 0;
  if (auto rc = shard_end(st, req.shard, end)) return rc;
  if (req.what == kind::truncate) return truncate(st, req, out, end);
  auto shard = std::to_string(req.shard);
  uint64_t promised = 0;
  std::vector<epoch_start> history;
  if (auto err = read_promise(st, req.shard, promised)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  if (auto err = read_epochs(st, req.shard, history)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  auto newest = history.empty() ? 0 : history.back().epoch;
  if (req.what == kind::begin_epoch) {
    if (req.leader_epoch <= newest || req.leader_epoch < promised) {
      out = error{errc::stale_epoch,
                  "cannot begin epoch " + std::to_string(req.leader_epoch) +
                      " of shard " + shard + ": its log already has epoch " +
                      std::to_string(newest) + " and promised " +
                      std::to_string(promised)};
      return 0;
    }
    if (auto rc = put_u64(st, epoch_key(req.shard, req.leader_epoch), end + 1))
      return rc;
    return put_u64(st, promised_key(req.shard), req.leader_epoch);
  }
  if (req.leader_epoch < promised) {
    out = error{errc::stale_epoch,
                "refused a replicated batch of epoch " +
                    std::to_string(req.leader_epoch) + " for shard " + shard +
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
                      std::to_string(newest) + " in shard " + shard +
                      "; truncate first"};
      return 0;
    }
    if (req.position != end + 1) {
      out = error{errc::log_mismatch,
                  "a replicated batch starts at position " +
                      std::to_string(req.position) + " but shard " + shard +
                      "'s log ends at " + std::to_string(end)};
      return 0;
    }
    if (auto rc = apply_records(st, req, out, next_position, end)) return rc;
    if (std::get<error>(out)) return 0;
    if (req.records_epoch > newest)
      if (auto rc = put_u64(st, epoch_key(req.shard, req.records_epoch),
                            req.position))
        return rc;
    end += req.records.size();
  }
  // The leader's commit point, up to what this log holds now: committed
  // records are never truncated, so it stays true after a restart. A
  // commit point alone counts only if it names this log's end (the leader
  // knows what is here).
  bool continues = !req.records.empty() || req.position == end + 1;
  if (auto point = std::min(req.commit, end); point > 0 && continues) {
    uint64_t known = 0;
    if (auto rc = read_committed(st, req.shard, known)) return rc;
    if (point > known)
      if (auto rc = put_u64(st, committed_key(req.shard), point)) return rc;
  }
  if (req.leader_epoch > promised)
    return put_u64(st, promised_key(req.shard), req.leader_epoch);
  return 0;
}

int journal::impl::apply_records(detail::txn_state& st, replica_request& req,
                                 outcome& out, uint64_t& next_position,
                                 uint64_t shard_end_before) {
  // First check every record against the heads (as this batch changes
  // them), then write: a refused batch writes nothing.
  struct seen_head {
    cached_head* entry;
    uint64_t checked;  // highest sequence after the records checked so far
  };
  std::vector<event_envelope> envs(req.records.size());
  std::unordered_map<std::string_view, seen_head> heads_seen;
  // The head of `stream` as this batch has changed it so far.
  auto head_of = [&](const std::string& stream, seen_head*& h) -> int {
    auto i_head = heads_seen.find(stream);
    if (i_head == heads_seen.end()) {
      cached_head* entry = nullptr;
      error head_err;
      if (auto rc = load_head(st, stream, entry, head_err)) return rc;
      if (head_err) {
        out = std::move(head_err);
        return 0;
      }
      i_head = heads_seen
                   .emplace(*entry->stream,
                            seen_head{entry, entry->pending.highest})
                   .first;
    }
    h = &i_head->second;
    return 0;
  };
  // Snapshots the batch carries (the leader's snapshot_store::save), by
  // record index: stored right after their records.
  struct carried {
    size_t index;
    snapshot snap;
    uint64_t keep = 0;
  };
  std::vector<carried> snapshots;
  auto own_stream = shard_stream(req.shard);
  msgpack::zone zone;
  for (size_t i = 0; i < envs.size(); ++i) {
    auto& env = envs[i];
    auto pos = shard_end_before + 1 + i;
    if (auto err = decode_event(req.records[i], record_origin{{}, 0, pos},
                                zone, env)) {
      out = error{err.code(), "a replicated record of shard " +
                                  std::to_string(req.shard) +
                                  " is damaged: " + err.message()};
      return 0;
    }
    seen_head* hp = nullptr;
    if (auto rc = head_of(env.stream_id, hp)) return rc;
    if (!hp) return 0;  // `out` says why
    auto& h = *hp;
    if (env.sequence != h.checked + 1) {
      out = error{errc::log_mismatch,
                  "the replicated record at position " + std::to_string(pos) +
                      " of shard " + std::to_string(req.shard) + " (stream '" +
                      env.stream_id + "', sequence " +
                      std::to_string(env.sequence) +
                      ") does not continue its stream here (sequence " +
                      std::to_string(h.checked) + ")"};
      return 0;
    }
    h.checked = env.sequence;
    if (env.type == shard_snapshot_type && env.stream_id == own_stream) {
      carried c{i, {}, 0};
      auto err = decode_shard_snapshot(env.payload, c.snap, c.keep);
      if (!err) err = check_name(c.snap.meta.stream_id, "stream id");
      std::optional<uint32_t> its_shard;
      if (!err && cfg.shard_of) its_shard = cfg.shard_of(c.snap.meta.stream_id);
      // A stream this replica maps to another shard is refused; one it
      // cannot place (its type is not routed here yet, e.g. during a
      // rolling deploy) is trusted to the leader.
      if (!err && its_shard && *its_shard != req.shard)
        err = error{errc::corrupt_record,
                    "names stream '" + c.snap.meta.stream_id +
                        "', which is not in this shard"};
      if (err) {
        out = error{errc::corrupt_record,
                    "the replicated snapshot at position " +
                        std::to_string(pos) + " of shard " +
                        std::to_string(req.shard) + " is refused: " +
                        err.message()};
        return 0;
      }
      seen_head* covered = nullptr;
      if (auto rc = head_of(c.snap.meta.stream_id, covered)) return rc;
      if (!covered) return 0;
      if (covered->checked < c.snap.meta.sequence) {
        out = error{errc::log_mismatch,
                    "the replicated snapshot at position " +
                        std::to_string(pos) + " of shard " +
                        std::to_string(req.shard) + " (stream '" +
                        c.snap.meta.stream_id + "', sequence " +
                        std::to_string(c.snap.meta.sequence) +
                        ") is past the stream's head here (sequence " +
                        std::to_string(covered->checked) + ")"};
        return 0;
      }
      snapshots.push_back(std::move(c));
    }
  }
  auto next_snapshot = snapshots.begin();
  for (size_t i = 0; i < envs.size(); ++i) {
    auto& env = envs[i];
    auto& rec = req.records[i];
    auto* entry = heads_seen.find(env.stream_id)->second.entry;
    auto head_rec = entry->pending;
    auto pos = next_position++;
    be64_key pkey{pos};
    MDB_val key = pkey.val();
    MDB_val val{rec.size(), nullptr};
    if (auto rc =
            mdb_cursor_put(events_cursor, &key, &val, MDB_APPEND | MDB_RESERVE))
      return rc;
    auto* out_rec = static_cast<char*>(val.mv_data);
    std::memcpy(out_rec, rec.data(), rec.size());
    seal_record(out_rec, rec.size(), event_record_kind, env.sequence,
                env.timestamp_us, head_rec.last_position);
    auto& stream = env.stream_id;
    auto seq = env.sequence;
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
    MDB_val idkey{16, env.id.bytes.data()};
    MDB_val idval{16 + stream.size(), idv};
    if (auto rc = put_event_id(idkey, idval)) return rc;
    for (auto& tag : env.tags) {
      auto tkey_bytes = name_key(tag, pos);
      MDB_val tkey = to_val(tkey_bytes);
      MDB_val empty{0, nullptr};
      if (auto rc = mdb_put(st.txn, dbs.tags, &tkey, &empty, 0)) return rc;
    }
    if (auto rc = put_shard_entry(st, req.shard, pos)) return rc;
    head_rec.highest = seq;
    head_rec.last_position = pos;
    heads.store(*entry, head_rec);
    if (next_snapshot != snapshots.end() && next_snapshot->index == i) {
      if (auto rc =
              store_snapshot(st, next_snapshot->snap, next_snapshot->keep))
        return rc;
      ++next_snapshot;
    }
  }
  return 0;
}

int journal::impl::truncate(detail::txn_state& st, replica_request& req,
                            outcome& out, uint64_t end) {
  auto keep = req.position;
  if (keep >= end) return 0;  // nothing past it
  auto shard = std::to_string(req.shard);
  if (req.drop) {
    // Only the copy the caller found it may drop: a leader that synced it
    // since promised a newer epoch first, and what it wrote since moved
    // the end.
    uint64_t promised = 0;
    if (auto err = read_promise(st, req.shard, promised)) {
      out = std::move(err);
      return st.fatal_rc;
    }
    if (promised != req.expect_promise || end != req.expect_end) {
      out = error{errc::stale_epoch,
                  "not dropping shard " + shard + ": a leader wrote to it "
                  "since the drop was allowed (promise " +
                      std::to_string(promised) + ", end " +
                      std::to_string(end) + ")"};
      return 0;
    }
  }
  // Records this replica learnt are committed are never truncated (read
  // models of the shard log may have served them): a request to is a
  // protocol error, refused rather than obeyed. A drop takes them too
  // (its replicas keep them), and the point follows the kept records,
  // written last: a refused request writes nothing.
  bool lower_committed = false;
  {
    uint64_t committed = 0;
    if (auto rc = read_committed(st, req.shard, committed)) return rc;
    if (req.drop && keep < committed) {
      lower_committed = true;
    } else if (keep < committed) {
      out = error{errc::invalid_argument,
                  "refused to truncate shard " + shard + " after position " +
                      std::to_string(keep) + ": this replica learnt that " +
                      "records up to " + std::to_string(committed) +
                      " are committed"};
      return 0;
    }
  }
  if (std::find(shard_ends.appended.begin(), shard_ends.appended.end(),
                req.shard) != shard_ends.appended.end()) {
    out = error{errc::invalid_argument,
                "shard " + shard +
                    " took appends in the same group commit as its "
                    "truncation; stop appending to it first"};
    return 0;
  }
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
    if (auto err = cur.open(st, dbs.shard_log)) {
      out = std::move(err);
      return st.fatal_rc;
    }
    shard_key start{req.shard, keep + 1};
    MDB_val key = start.val();
    MDB_val val;
    msgpack::zone zone;
    for (auto rc = cur.get(key, val, MDB_SET_RANGE); rc != MDB_NOTFOUND;
         rc = cur.get(key, val, MDB_NEXT)) {
      if (rc != 0) return rc;
      if (key.mv_size != 12 ||
          get_be32(static_cast<const char*>(key.mv_data)) != req.shard)
        break;
      auto spos = get_be64(static_cast<const char*>(key.mv_data) + 4);
      auto pos = get_be64(static_cast<const char*>(val.mv_data));
      be64_key pkey{pos};
      MDB_val ekey = pkey.val();
      MDB_val rec;
      auto rc2 = mdb_get(st.txn, dbs.events, &ekey, &rec);
      if (rc2 == MDB_NOTFOUND) {
        out = error{errc::invalid_argument,
                    "cannot truncate shard " + shard + " after position " +
                        std::to_string(keep) + ": its record at " +
                        std::to_string(spos) +
                        " was deleted (a shard's streams take no deletions)"};
        return 0;
      }
      if (rc2 != 0) return rc2;
      event_envelope env;
      if (auto err =
              decode_event(to_view(rec), record_origin{{}, 0, pos}, zone, env)) {
        out = std::move(err);
        return 0;
      }
      doomed.push_back(removed{
          pos, env.sequence,
          get_be64(static_cast<const char*>(rec.mv_data) + back_link_offset),
          std::move(env.stream_id), std::move(env.tags), env.id});
    }
  }
  // Oldest removed record last, so that each stream goes back to the
  // predecessor of its oldest removed record.
  std::unordered_map<std::string, head_record> new_heads;
  for (auto i = doomed.rbegin(); i != doomed.rend(); ++i) {
    auto& h = new_heads[i->stream];
    h.highest = i->seq - 1;
    h.last_position = i->previous;
  }
  // Every head is checked before any changes: a refused truncation writes
  // nothing.
  std::vector<std::pair<cached_head*, const head_record*>> changes;
  for (auto& [stream, h] : new_heads) {
    cached_head* entry = nullptr;
    error head_err;
    if (auto rc = load_head(st, stream, entry, head_err)) return rc;
    if (head_err) {
      out = std::move(head_err);
      return 0;
    }
    if (entry->pending.deleted_to > h.highest) {
      out = error{errc::invalid_argument,
                  "cannot truncate shard " + shard + " after position " +
                      std::to_string(keep) + ": events of stream '" + stream +
                      "' were deleted past it (a shard's streams take no "
                      "deletions)"};
      return 0;
    }
    changes.emplace_back(entry, &h);
  }
  for (auto& [entry, hp] : changes) {
    auto& h = *hp;
    auto& stream = *entry->stream;
    auto value = entry->pending;
    value.highest = h.highest;
    value.last_position = h.last_position;
    heads.store(*entry, value);
    write_txn txn{st};
    snapshot_criteria past;
    past.min_sequence = h.highest + 1;
    if (auto err = snapshot_store::remove_in(txn, stream, past)) {
      out = std::move(err);
      return st.fatal_rc;
    }
  }
  for (auto& d : doomed) {
    MDB_val idkey{16, d.id.bytes.data()};
    if (auto rc = mdb_del(st.txn, dbs.event_ids, &idkey, nullptr);
        rc != 0 && rc != MDB_NOTFOUND)
      return rc;
    if (auto rc = remove_event(st, d.stream, d.seq, d.pos, d.tags)) return rc;
  }
  for (auto spos = keep + 1; spos <= end; ++spos) {
    shard_key k{req.shard, spos};
    MDB_val key = k.val();
    auto rc = mdb_del(st.txn, dbs.shard_log, &key, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  // Epochs that start past the kept records leave the history.
  std::vector<epoch_start> history;
  if (auto err = read_epochs(st, req.shard, history)) {
    out = std::move(err);
    return st.fatal_rc;
  }
  for (auto& e : history) {
    if (e.start_position <= keep) continue;
    auto k = epoch_key(req.shard, e.epoch);
    MDB_val key = to_val(k);
    if (auto rc = mdb_del(st.txn, dbs.meta, &key, nullptr)) return rc;
  }
  if (lower_committed)
    if (auto rc = put_u64(st, committed_key(req.shard), keep)) return rc;
  shard_ends.pending[req.shard] = keep;
  return 0;
}

// -- public --------------------------------------------------------------------

expected<uint64_t> replica_log::end_position() const {
  uint64_t out = 0;
  if (auto err = journal_->impl_->with_read([&](detail::txn_state& st) {
        return st.check(read_shard_end(st, shard_, out), "shard log end");
      }))
    return err;
  return out;
}

namespace {

// Walks shard `shard`'s log from shard position `from` to `last`
// (inclusive), in order: calls `visit(shard position, global position,
// event record)` for each entry until it answers false or an error.
// Errors: `corrupt_record` for a gap or a malformed entry, `not_found` for
// an entry whose event was deleted, storage errors.
template <class Visit>
error walk_shard_log(detail::txn_state& st, uint32_t shard, uint64_t from,
                     uint64_t last, Visit&& visit) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->shard_log)) return err;
  shard_key start{shard, from};
  MDB_val key = start.val();
  MDB_val val;
  auto expect = from;
  for (auto rc = cur.get(key, val, MDB_SET_RANGE); rc != MDB_NOTFOUND;
       rc = cur.get(key, val, MDB_NEXT)) {
    if (auto err = st.check(rc, "mdb_cursor_get (shard log)")) return err;
    if (key.mv_size != 12 ||
        get_be32(static_cast<const char*>(key.mv_data)) != shard)
      break;
    auto spos = get_be64(static_cast<const char*>(key.mv_data) + 4);
    if (spos > last) break;
    if (spos != expect || val.mv_size != 8)
      return error{errc::corrupt_record,
                   "corrupt journal: shard " + std::to_string(shard) +
                       "'s log has no entry at position " +
                       std::to_string(expect)};
    auto pos = get_be64(static_cast<const char*>(val.mv_data));
    be64_key pkey{pos};
    MDB_val ekey = pkey.val();
    MDB_val rec;
    auto rc2 = mdb_get(st.txn, st.dbs->events, &ekey, &rec);
    if (rc2 == MDB_NOTFOUND)
      return error{errc::not_found,
                   "position " + std::to_string(spos) + " of shard " +
                       std::to_string(shard) +
                       "'s log was deleted here; it cannot be shipped "
                       "from there (copy the shard instead)"};
    if (auto err = st.check(rc2, "mdb_get (events)")) return err;
    auto more = visit(spos, pos, rec);
    if (!more) return more.error();
    if (!*more) break;
    ++expect;
  }
  return {};
}

}  // namespace

expected<log_batch> replica_log::read(uint64_t from_position,
                                      size_t max_records,
                                      size_t max_bytes) const {
  log_batch out;
  if (from_position == 0) from_position = 1;
  out.first_position = from_position;
  auto err = journal_->impl_->with_read([&](detail::txn_state& st) -> error {
    if (st.dbs->shard_log == 0) return {};
    std::vector<epoch_start> history;
    if (auto err = read_epochs(st, shard_, history)) return err;
    // The epoch of `from_position` and where the next one starts.
    uint64_t stop = UINT64_MAX;
    for (auto& e : history) {
      if (e.start_position <= from_position) {
        out.epoch = e.epoch;
      } else {
        stop = e.start_position;
        break;
      }
    }
    size_t bytes = 0;
    return walk_shard_log(
        st, shard_, from_position, stop - 1,
        [&](uint64_t, uint64_t pos, const MDB_val& rec) -> expected<bool> {
          if (!out.records.empty() && bytes + rec.mv_size > max_bytes)
            return false;
          if (rec.mv_size < record_header_size)
            return error{errc::corrupt_record,
                         "corrupt journal: the record at global position " +
                             std::to_string(pos) + " is too short"};
          out.records.push_back(portable(to_view(rec)));
          bytes += rec.mv_size;
          return out.records.size() < max_records;
        });
  });
  if (err) return err;
  if (out.records.empty()) out.epoch = 0;
  return out;
}

expected<std::vector<event_envelope>> replica_log::events(
    uint64_t from_position, uint64_t last_position, size_t max_events) const {
  std::vector<event_envelope> out;
  if (from_position == 0) from_position = 1;
  if (from_position > last_position || max_events == 0) return out;
  auto err = journal_->impl_->with_read([&](detail::txn_state& st) -> error {
    if (st.dbs->shard_log == 0) return {};
    msgpack::zone zone;
    return walk_shard_log(
        st, shard_, from_position, last_position,
        [&](uint64_t spos, uint64_t pos, const MDB_val& rec) -> expected<bool> {
          auto& env = out.emplace_back();
          if (auto err = decode_event(to_view(rec), record_origin{{}, 0, pos},
                                      zone, env))
            return err;
          env.position = spos;
          return out.size() < max_events;
        });
  });
  if (err) return err;
  return out;
}

namespace {

// 64-bit FNV-1a over length-prefixed fields.
struct fnv64 {
  uint64_t h = 14695981039346656037ull;
  void bytes(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  void u64(uint64_t x) {
    char buf[8];
    put_be64(buf, x);
    bytes(buf, 8);
  }
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
};

}  // namespace

expected<log_digest> replica_log::digest(uint64_t to) const {
  log_digest out;
  fnv64 h;
  // One read transaction: the end, the events and the epochs of one state
  // of the log, whatever the writer does meanwhile.
  auto err = journal_->impl_->with_read([&](detail::txn_state& st) -> error {
    if (st.dbs->shard_log == 0) return {};
    uint64_t end = 0;
    if (auto err = st.check(read_shard_end(st, shard_, end), "shard log end"))
      return err;
    if (auto err = read_epochs(st, shard_, out.epochs)) return err;
    auto last = std::min(to, end);
    if (last == 0) return {};
    msgpack::zone zone;
    return walk_shard_log(
        st, shard_, 1, last,
        [&](uint64_t spos, uint64_t pos, const MDB_val& rec) -> expected<bool> {
          event_envelope e;
          if (auto err = decode_event(to_view(rec), record_origin{{}, 0, pos},
                                      zone, e))
            return err;
          h.u64(spos);
          h.bytes(e.id.bytes.data(), e.id.bytes.size());
          h.str(e.stream_id);
          h.u64(e.sequence);
          h.str(e.type);
          h.u64(e.schema_version);
          h.u64(static_cast<uint64_t>(e.timestamp_us));
          h.str(e.correlation_id);
          h.str(e.causation_id);
          h.u64(e.tags.size());
          for (auto& t : e.tags) h.str(t);
          h.u64(e.metadata.size());
          for (auto& [k, v] : e.metadata) {
            h.str(k);
            h.str(v);
          }
          h.u64(e.payload.size());
          h.bytes(e.payload.data(), e.payload.size());
          out.end = spos;
          return true;
        });
  });
  if (err) return err;
  out.value = h.h;
  return out;
}

void replica_log::apply(log_batch batch, uint64_t leader_epoch,
                        write_handler done, uint64_t commit) {
  replica_request req;
  req.what = replica_request::kind::apply;
  req.shard = shard_;
  req.leader_epoch = leader_epoch;
  req.commit = commit;
  req.records_epoch = batch.epoch;
  req.position = batch.first_position;
  req.records = std::move(batch.records);
  req.done = std::move(done);
  journal_->impl_->enqueue(std::move(req));
}

error replica_log::apply(log_batch batch, uint64_t leader_epoch,
                         uint64_t commit) {
  return blocking([&](write_handler done) {
    apply(std::move(batch), leader_epoch, std::move(done), commit);
  });
}

namespace {

// Queues `req` on the writer and waits until it is durable.
error submit_blocking(journal::impl& impl, replica_request req) {
  return blocking([&](write_handler done) {
    req.done = std::move(done);
    impl.enqueue(std::move(req));
  });
}

}  // namespace

error replica_log::begin_epoch(uint64_t epoch) {
  replica_request req;
  req.what = replica_request::kind::begin_epoch;
  req.shard = shard_;
  req.leader_epoch = epoch;
  return submit_blocking(*journal_->impl_, std::move(req));
}

expected<uint64_t> replica_log::append_marker(uint64_t epoch) {
  new_event marker;
  marker.type = "mnemo.epoch_started";
  // msgpack {"epoch": uint64}
  marker.payload = {0x81, 0xa5, 'e', 'p', 'o', 'c', 'h', 0xcf};
  for (int i = 7; i >= 0; --i)
    marker.payload.push_back(static_cast<uint8_t>(epoch >> (8 * i)));
  std::vector<new_event> events;
  events.push_back(std::move(marker));
  std::promise<expected<append_result>> promise;
  auto future = promise.get_future();
  journal_->append_in_shard(
      shard_stream(shard_), std::move(events), shard_,
      [&promise](expected<append_result> r) { promise.set_value(std::move(r)); });
  auto res = future.get();
  if (!res) return std::move(res).error();
  return res->shard_position;
}

error replica_log::truncate_after(uint64_t position) {
  replica_request req;
  req.what = replica_request::kind::truncate;
  req.shard = shard_;
  req.position = position;
  return submit_blocking(*journal_->impl_, std::move(req));
}

expected<uint64_t> replica_log::drop(
    uint64_t chunk, const std::function<std::optional<uint64_t>()>& permit) {
  chunk = std::max<uint64_t>(chunk, 1);
  uint64_t removed = 0;
  for (;;) {
    auto end = end_position();
    if (!end) return std::move(end).error();
    if (*end == 0) return removed;
    auto promise = permit();
    if (!promise) return removed;
    // The end as of after the permit: a batch applied in between is
    // covered by the promise check (its leader promised first).
    end = end_position();
    if (!end) return std::move(end).error();
    auto keep = *end > chunk ? *end - chunk : 0;
    replica_request req;
    req.what = replica_request::kind::truncate;
    req.shard = shard_;
    req.position = keep;
    req.drop = true;
    req.expect_promise = *promise;
    req.expect_end = *end;
    auto err = submit_blocking(*journal_->impl_, std::move(req));
    if (err.code() == errc::stale_epoch) return removed;  // written to
    if (err) return err;
    removed += *end - keep;
  }
}

void replica_log::set_learner(bool learner, write_handler done) {
  replica_request req;
  req.what = replica_request::kind::set_learner;
  req.shard = shard_;
  req.shards = {shard_};
  req.learner = learner;
  req.done = std::move(done);
  journal_->impl_->enqueue(std::move(req));
}

error replica_log::mark_learners(
    journal& j, const std::vector<std::pair<uint32_t, uint64_t>>& shards) {
  replica_request req;
  req.what = replica_request::kind::set_learner;
  for (auto& [shard, epoch] : shards) {
    req.shards.push_back(shard);
    req.epochs.push_back(epoch);
  }
  req.learner = true;
  return submit_blocking(*j.impl_, std::move(req));
}

expected<std::optional<uint64_t>> replica_log::learner() const {
  std::optional<uint64_t> out;
  if (auto err = journal_->impl_->with_read([&](detail::txn_state& st) {
        auto k = learner_key(shard_);
        MDB_val key = to_val(k);
        MDB_val val;
        auto rc = mdb_get(st.txn, st.dbs->meta, &key, &val);
        if (rc == MDB_NOTFOUND) return error{};
        if (auto err = st.check(rc, "mdb_get (learner)")) return err;
        out = val.mv_size == 8
                  ? get_be64(static_cast<const char*>(val.mv_data))
                  : uint64_t{0};
        return error{};
      }))
    return err;
  return out;
}

expected<std::map<uint32_t, uint64_t>> replica_log::committed_points(
    const journal& j) {
  std::map<uint32_t, uint64_t> out;
  if (auto err = j.impl_->with_read([&](detail::txn_state& st) {
        MDB_cursor* cur = nullptr;
        if (auto err = st.check(mdb_cursor_open(st.txn, st.dbs->meta, &cur),
                                "mdb_cursor_open (committed)"))
          return err;
        std::string prefix{committed_prefix};
        MDB_val key = to_val(prefix);
        MDB_val val;
        auto rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        while (rc == 0 && key.mv_size == prefix.size() + 4 &&
               std::memcmp(key.mv_data, prefix.data(), prefix.size()) == 0) {
          if (val.mv_size == 8)
            out[get_be32(static_cast<const char*>(key.mv_data) +
                         prefix.size())] =
                get_be64(static_cast<const char*>(val.mv_data));
          rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        if (rc != 0 && rc != MDB_NOTFOUND)
          return st.check(rc, "mdb_cursor_get (committed)");
        return error{};
      }))
    return err;
  return out;
}

expected<uint64_t> replica_log::committed() const {
  uint64_t out = 0;
  if (auto err = journal_->impl_->with_read([&](detail::txn_state& st) {
        return st.check(read_committed(st, shard_, out), "mdb_get (committed)");
      }))
    return err;
  return out;
}

std::string replica_log::replica_id(const journal& j) {
  auto& raw = j.impl_->replica_id;
  if (raw.size() != 16) return {};
  event_id id;
  std::copy(raw.begin(), raw.end(), id.bytes.begin());
  return id.to_string();
}

expected<std::vector<epoch_start>> replica_log::epochs() const {
  std::vector<epoch_start> out;
  if (auto err = journal_->impl_->with_read(
          [&](detail::txn_state& st) { return read_epochs(st, shard_, out); }))
    return err;
  return out;
}

expected<uint64_t> replica_log::promised_epoch() const {
  uint64_t out = 0;
  if (auto err = journal_->impl_->with_read([&](detail::txn_state& st) {
        return read_promise(st, shard_, out);
      }))
    return err;
  return out;
}

namespace {

epoch_end end_in(const std::vector<epoch_start>& history, uint64_t log_end,
                 uint64_t epoch) {
  epoch_end out;
  for (auto& e : history) {
    if (e.epoch > epoch) {
      // Ends where the next one starts; a log whose epochs are all newer
      // holds nothing of `epoch` (0, with its first start - 1).
      out.last_position = e.start_position - 1;
      return out;
    }
    out.epoch = e.epoch;
  }
  out.last_position = history.empty() ? 0 : log_end;
  return out;
}

}  // namespace

expected<epoch_end> replica_log::end_of(uint64_t epoch) const {
  auto history = epochs();
  if (!history) return std::move(history).error();
  auto end = end_position();
  if (!end) return std::move(end).error();
  return end_in(*history, *end, epoch);
}

epoch_end end_of_epoch(const std::vector<epoch_start>& history,
                       uint64_t log_end, uint64_t epoch) {
  return end_in(history, log_end, epoch);
}

uint64_t truncation_point(const std::vector<epoch_start>& follower_epochs,
                          uint64_t follower_end,
                          const std::vector<epoch_start>& leader_epochs,
                          uint64_t leader_end) {
  auto e = follower_epochs.empty() ? 0 : follower_epochs.back().epoch;
  for (;;) {
    auto theirs = end_in(leader_epochs, leader_end, e);
    auto mine = end_in(follower_epochs, follower_end, theirs.epoch);
    if (mine.epoch == theirs.epoch)
      return std::min(mine.last_position, theirs.last_position);
    e = mine.epoch;  // < theirs.epoch: look further back
  }
}

}  // namespace mnemo::persistence

// The replicator actor and its gate (replicator.hpp): leaders push shard
// records to followers in pipelined batches and commit at the majority's
// durable end; followers apply them and answer with theirs.

#include "mnemo/runtime/replication/replicator.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::runtime::replication {

namespace pe = persistence;
using bytes = std::vector<char>;

// -- bytes ---------------------------------------------------------------------

namespace {

constexpr uint8_t batch_format = 1;

void put_u64(bytes& out, uint64_t x) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(x >> (8 * i)));
}

void put_u32(bytes& out, uint32_t x) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(x >> (8 * i)));
}

struct reader {
  const char* data;
  size_t size;
  size_t at = 0;
  bool ok = true;
  explicit reader(const bytes& buf) : data(buf.data()), size(buf.size()) {}
  reader(const char* p, size_t n) : data(p), size(n) {}
  uint64_t u(size_t n) {
    if (size - at < n) {
      ok = false;
      return 0;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < n; ++i)
      x = (x << 8) | static_cast<uint8_t>(data[at + i]);
    at += n;
    return x;
  }
  size_t left() const noexcept { return size - at; }
};

caf::error malformed(const std::string& what) {
  return make_error(errc::invalid_argument,
                    "malformed replication message: " + what);
}

bytes encode_epochs(const std::vector<pe::epoch_start>& epochs) {
  bytes out;
  put_u32(out, static_cast<uint32_t>(epochs.size()));
  for (auto& e : epochs) {
    put_u64(out, e.epoch);
    put_u64(out, e.start_position);
  }
  return out;
}

caf::expected<std::vector<pe::epoch_start>> decode_epochs(const bytes& buf) {
  reader r{buf};
  auto n = r.u(4);
  if (!r.ok || n > r.left() / 16) return malformed("epoch count");
  std::vector<pe::epoch_start> out;
  for (uint64_t i = 0; i < n; ++i) {
    auto e = r.u(8);
    auto s = r.u(8);
    out.push_back(pe::epoch_start{e, s});
  }
  if (!r.ok || r.at != buf.size()) return malformed("epoch history size");
  return out;
}

}  // namespace

namespace {

// Appends the batch's bytes to `out` (encode_batch).
void append_batch(bytes& out, const pe::log_batch& batch) {
  out.reserve(out.size() + 21 + batch.bytes() + 4 * batch.records.size());
  out.push_back(static_cast<char>(batch_format));
  put_u64(out, batch.epoch);
  put_u64(out, batch.first_position);
  put_u32(out, static_cast<uint32_t>(batch.records.size()));
  for (auto& rec : batch.records) {
    put_u32(out, static_cast<uint32_t>(rec.size()));
    out.insert(out.end(), rec.begin(), rec.end());
  }
}

// Overwrites the 4 bytes at `at` with `x` (a size known only afterwards).
void patch_u32(bytes& out, size_t at, uint32_t x) {
  for (int i = 3; i >= 0; --i) {
    out[at + static_cast<size_t>(i)] = static_cast<char>(x & 0xff);
    x >>= 8;
  }
}

}  // namespace

bytes encode_batch(const pe::log_batch& batch) {
  bytes out;
  append_batch(out, batch);
  return out;
}

namespace {

caf::expected<pe::log_batch> decode_batch_at(const char* data, size_t size) {
  reader r{data, size};
  if (r.u(1) != batch_format || !r.ok) return malformed("batch format");
  pe::log_batch out;
  out.epoch = r.u(8);
  out.first_position = r.u(8);
  auto n = r.u(4);
  if (!r.ok || n > r.left() / 4) return malformed("batch header");
  out.records.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    auto len = r.u(4);
    if (!r.ok || len > r.left()) return malformed("record size");
    out.records.emplace_back(data + r.at, len);
    r.at += len;
  }
  if (r.at != size) return malformed("trailing bytes");
  if (out.first_position == 0) return malformed("position 0");
  return out;
}

// One item of a bundle: u32 shard, u64 epoch, u64 commit, u32 size, batch.
void put_bundle_item(bytes& out, uint32_t shard, uint64_t epoch,
                     uint64_t commit, const pe::log_batch& batch) {
  put_u32(out, shard);
  put_u64(out, epoch);
  put_u64(out, commit);
  auto size_at = out.size();
  put_u32(out, 0);
  append_batch(out, batch);
  patch_u32(out, size_at, static_cast<uint32_t>(out.size() - size_at - 4));
}

}  // namespace

caf::expected<pe::log_batch> decode_batch(const bytes& buf) {
  return decode_batch_at(buf.data(), buf.size());
}

bytes encode_bundle(const std::vector<bundle_item>& items) {
  // (The leader builds its bundles item by item: put_bundle_item.)
  bytes out;
  put_u32(out, static_cast<uint32_t>(items.size()));
  for (auto& item : items)
    put_bundle_item(out, item.shard, item.epoch, item.commit, item.batch);
  return out;
}

caf::expected<std::vector<bundle_item>> decode_bundle(const bytes& buf) {
  reader r{buf};
  auto n = r.u(4);
  // An item takes at least its 24-byte header and a 21-byte batch.
  if (!r.ok || n > r.left() / 45) return malformed("bundle header");
  std::vector<bundle_item> out;
  out.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    bundle_item item;
    item.shard = static_cast<uint32_t>(r.u(4));
    item.epoch = r.u(8);
    item.commit = r.u(8);
    auto len = r.u(4);
    if (!r.ok || len > r.left()) return malformed("bundle item size");
    auto batch = decode_batch_at(buf.data() + r.at, len);
    if (!batch) return std::move(batch.error());
    item.batch = std::move(*batch);
    r.at += len;
    out.push_back(std::move(item));
  }
  if (r.at != buf.size()) return malformed("trailing bytes after a bundle");
  return out;
}

// -- gate ----------------------------------------------------------------------

pe::expected<uint64_t> shard_gate::admit(uint32_t shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto i = led_.find(shard); i != led_.end()) return i->second.epoch;
  return pe::error{pe::errc::not_leader,
                   "this member does not lead shard " + std::to_string(shard)};
}

void shard_gate::wait_committed(uint32_t shard, uint64_t epoch,
                                uint64_t position,
                                std::function<void(pe::error)> release) {
  std::function<void(uint32_t, uint64_t)> notify;
  {
    std::unique_lock<std::mutex> guard{mtx_};
    auto i = led_.find(shard);
    if (i == led_.end() || i->second.epoch != epoch) {
      guard.unlock();
      return release(pe::error{
          pe::errc::not_leader,
          "this member stopped leading shard " + std::to_string(shard) +
              " before a majority held the append; its outcome is unknown "
              "until the new leader answers a retry with the same ids"});
    }
    if (position <= i->second.committed) {
      guard.unlock();
      return release({});
    }
    auto& s = i->second;
    s.waiting.push_back(waiter{position, std::move(release)});
    s.announced = std::max(s.announced, position);
    // One notification until the replicator takes it: a burst of appends
    // costs the replicator one message.
    if (!s.notify_pending) {
      s.notify_pending = true;
      notify = on_append_;
    }
  }
  if (notify) notify(shard, position);
}

uint64_t shard_gate::take_announced(uint32_t shard) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = led_.find(shard);
  if (i == led_.end()) return 0;
  i->second.notify_pending = false;
  return i->second.announced;
}

void shard_gate::lead(uint32_t shard, uint64_t epoch) {
  std::vector<waiter> stale;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& s = led_[shard];
    if (s.epoch != epoch) {
      stale = std::move(s.waiting);
      s.waiting.clear();
      s.committed = 0;
    }
    s.epoch = epoch;
  }
  for (auto& x : stale)
    x.release(pe::error{pe::errc::not_leader,
                        "shard " + std::to_string(shard) +
                            " is led in a new epoch; the append's outcome is "
                            "unknown until a retry with the same ids"});
}

void shard_gate::commit(uint32_t shard, uint64_t position) {
  std::vector<waiter> ready;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = led_.find(shard);
    if (i == led_.end() || position <= i->second.committed) return;
    i->second.committed = position;
    auto& w = i->second.waiting;
    auto mid = std::stable_partition(w.begin(), w.end(), [&](const waiter& x) {
      return x.position > position;
    });
    std::move(mid, w.end(), std::back_inserter(ready));
    w.erase(mid, w.end());
  }
  for (auto& x : ready) x.release({});
}

void shard_gate::step_down(uint32_t shard, const std::string& why) {
  std::vector<waiter> failed;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = led_.find(shard);
    if (i == led_.end()) return;
    failed = std::move(i->second.waiting);
    led_.erase(i);
  }
  for (auto& x : failed)
    x.release(pe::error{pe::errc::not_leader,
                        "shard " + std::to_string(shard) +
                            " lost its leader here (" + why +
                            ") before a majority held the append; its "
                            "outcome is unknown until the new leader "
                            "answers a retry with the same ids"});
}

void shard_gate::on_local_append(std::function<void(uint32_t, uint64_t)> f) {
  std::lock_guard<std::mutex> guard{mtx_};
  on_append_ = std::move(f);
}

// -- actor ---------------------------------------------------------------------

namespace {

using local_append_atom = caf::atom_constant<caf::atom("mn_rlocal")>;
using applied_atom = caf::atom_constant<caf::atom("mn_rapply")>;
using tick_atom = caf::atom_constant<caf::atom("mn_rtick")>;

struct follower_state {
  std::string member;
  bool synced = false;
  bool syncing = false;
  uint64_t next = 1;
  uint64_t durable = 0;
  size_t inflight = 0;
  uint64_t generation = 0;
  uint64_t commit_sent = 0;
  /// Whether it answered its last sync as a voter (not a learner).
  bool voter = false;
  /// Whether its durable end counts towards the commit point: false for an
  /// observer (repl_observers_atom).
  bool counts = true;
};

struct led_shard {
  uint64_t epoch = 0;
  uint64_t local_end = 0;
  uint64_t commit = 0;
  /// Position of this epoch's marker: the commit point counts only records
  /// from here on (older ones are committed with it).
  uint64_t epoch_start = 0;
  std::vector<follower_state> followers;
  /// The last generation of each observer that left in this epoch: one
  /// that comes back continues from it, so that answers to the batches
  /// sent before it left find no follower.
  std::map<std::string, uint64_t> left_generations;
};

struct pending_apply {
  uint32_t shard;
  uint64_t end;     // the batch's last position
  uint64_t commit;  // the leader's commit point it carried
  uint64_t bundle;  // the bundle it came in, and its index there
  size_t index;
  uint64_t epoch;   // the sender's epoch
};

// A follower's answer to one item of a bundle.
struct item_answer {
  uint8_t code = 0;  // pe::errc; 0: applied (or refused as not continuing)
  uint64_t end = 0;  // the follower's durable end of the shard's log
  bool accepted = false;
  bool voter = false;  // whether the follower's copy votes (not a learner)
  std::string what;
};

// A bundle being applied: answered once every item is durable or refused.
struct pending_bundle {
  caf::response_promise promise;
  std::vector<item_answer> answers;
  size_t remaining = 0;
};

bytes encode_answers(const std::vector<item_answer>& answers) {
  bytes out;
  put_u32(out, static_cast<uint32_t>(answers.size()));
  for (auto& x : answers) {
    out.push_back(static_cast<char>(x.code));
    put_u64(out, x.end);
    out.push_back(static_cast<char>((x.accepted ? 1 : 0) | (x.voter ? 2 : 0)));
    put_u32(out, static_cast<uint32_t>(x.what.size()));
    out.insert(out.end(), x.what.begin(), x.what.end());
  }
  return out;
}

// The answers to a bundle of `n` items; nothing if malformed.
std::optional<std::vector<item_answer>> decode_answers(const bytes& buf,
                                                      size_t n) {
  reader r{buf};
  if (r.u(4) != n || !r.ok) return std::nullopt;
  std::vector<item_answer> answers(n);
  for (auto& a : answers) {
    a.code = static_cast<uint8_t>(r.u(1));
    a.end = r.u(8);
    auto flags = r.u(1);
    a.accepted = (flags & 1) != 0;
    a.voter = (flags & 2) != 0;
    auto len = r.u(4);
    if (!r.ok || len > r.left()) return std::nullopt;
    a.what.assign(buf.data() + r.at, len);
    r.at += len;
  }
  if (r.at != buf.size()) return std::nullopt;
  return answers;
}

// What a leader sent in one item of a bundle, to take its answer.
struct sent_item {
  uint32_t shard;
  uint64_t epoch;
  uint64_t generation;
};

struct recovery;

struct replicator_state {
  pe::journal* journal = nullptr;
  std::shared_ptr<shard_gate> gate;
  replicator_settings cfg;
  std::map<std::string, caf::actor> peers;
  std::map<uint32_t, led_shard> led;
  uint64_t next_apply = 1;
  std::map<uint64_t, pending_apply> applies;
  uint64_t next_bundle = 1;
  std::map<uint64_t, pending_bundle> bundles;
  /// Led shards with something to ship (or a follower to sync), taken by
  /// the next flush: one bundle per follower for all of them.
  std::set<uint32_t> dirty;
  bool flush_scheduled = false;
  /// Shards this replica is recovering to lead (resigning cancels them).
  std::map<uint32_t, std::shared_ptr<recovery>> recovering;
  /// The greatest commit point known per shard, led or followed.
  std::map<uint32_t, uint64_t> committed;
  /// Each shard's observers (repl_observers_atom), shipped to while led.
  std::map<uint32_t, std::vector<std::string>> observers;
  /// Told of every move of `committed` (repl_watch_atom).
  caf::actor watcher;
  /// Whether this member's identity was confirmed (repl_identity_atom, or
  /// at once without `await_identity`): until then no shard here votes.
  bool identity_known = false;
  /// Learner flags as read from or written to the journal, per shard.
  enum class role : uint8_t { voter, learner, clearing };
  std::map<uint32_t, role> roles;
  /// Learners: the least epoch of a leader whose commit point makes them
  /// voters again.
  std::map<uint32_t, uint64_t> learner_epochs;
  static inline const char* name = "mnemo.replicator";
};

using self_ptr = caf::stateful_actor<replicator_state>*;

pe::replica_log log_of(self_ptr self, uint32_t shard) {
  return pe::replica_log{*self->state.journal, shard};
}

using role = replicator_state::role;

role role_of(self_ptr self, uint32_t shard) {
  auto [i, added] = self->state.roles.emplace(shard, role::voter);
  if (added) {
    auto learner = log_of(self, shard).learner();
    if (!learner) {
      // A flag that cannot be read counts as a learner (safe), this time:
      // read it again next time.
      self->state.roles.erase(i);
      return role::learner;
    }
    i->second = *learner ? role::learner : role::voter;
    if (*learner) self->state.learner_epochs[shard] = **learner;
  }
  return i->second;
}

// Whether this replica of `shard` counts in a new leader's majority: only
// once its member's identity is confirmed, and not while it is a learner
// (its member's data was replaced and it has not caught up since).
bool votes(self_ptr self, uint32_t shard) {
  return self->state.identity_known && role_of(self, shard) == role::voter;
}

using voter_atom = caf::atom_constant<caf::atom("mn_rvoter")>;

caf::error identity_unknown(self_ptr self) {
  return make_error(errc::owner_unavailable,
                    "replica " + self->state.cfg.member +
                        " follows no leader before its identity is checked "
                        "in etcd");
}

// A learner that now holds everything a leader of `epoch` committed: it
// votes again once that is durable, if that leader is not older than the
// shard's leader when it became a learner (an older one may have been
// deposed without knowing it, and its commit point miss what a newer
// leader committed with the lost copy's help).
void stop_learning(self_ptr self, uint32_t shard, uint64_t epoch) {
  if (role_of(self, shard) != role::learner) return;
  if (epoch < self->state.learner_epochs[shard]) return;
  self->state.roles[shard] = role::clearing;
  auto weak = caf::actor_cast<caf::weak_actor_ptr>(self);
  log_of(self, shard).set_learner(false, [weak, shard](pe::error err) {
    if (auto strong = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong), voter_atom::value,
                     shard, !err);
  });
}

void step_down(self_ptr self, uint32_t shard, const std::string& why) {
  self->state.led.erase(shard);
  self->state.gate->step_down(shard, why);
}

// A commit point of `shard` learnt here: tells the watcher if it moved on.
void note_commit(self_ptr self, uint32_t shard, uint64_t position) {
  auto& known = self->state.committed[shard];
  if (position <= known) return;
  known = position;
  if (self->state.watcher)
    self->send(self->state.watcher, repl_committed_atom::value, shard,
               position);
}

// The commit point: the greatest position a majority of the replicas (this
// one included) hold durably.
void recompute_commit(self_ptr self, uint32_t shard, led_shard& s) {
  std::vector<uint64_t> ends{s.local_end};
  for (auto& f : s.followers)
    if (f.counts) ends.push_back(f.durable);
  std::sort(ends.begin(), ends.end(), std::greater<>{});
  auto majority = ends.size() / 2 + 1;
  auto candidate = std::min(ends[majority - 1], s.local_end);
  // Only a record of this epoch is committed by counting replicas (an
  // older epoch's record on a majority could still be replaced by a
  // leader that never saw it, Raft's "figure 8"); the marker commits the
  // records before it.
  if (candidate < s.epoch_start) return;
  if (candidate > s.commit) {
    s.commit = candidate;
    self->state.gate->commit(shard, candidate);
    note_commit(self, shard, candidate);
  }
}

void pump(self_ptr self, uint32_t shard);

void unsync(follower_state& f) {
  f.synced = false;
  f.syncing = false;
  f.inflight = 0;
  // It may have restarted and forgotten the commit point: tell it again
  // once it is synced (an idle shard sends nothing else).
  f.commit_sent = 0;
  ++f.generation;
}

follower_state* find_follower(self_ptr self, uint32_t shard, uint64_t epoch,
                              const std::string& member, uint64_t generation) {
  auto i = self->state.led.find(shard);
  if (i == self->state.led.end() || i->second.epoch != epoch) return nullptr;
  for (auto& f : i->second.followers)
    if (f.member == member)
      return f.generation == generation ? &f : nullptr;
  return nullptr;
}

// Makes the observers of a shard led here those of `state.observers`:
// new ones join as followers that do not count (synced first, as every
// follower), gone ones leave (their answers in flight find no follower).
void set_observers(self_ptr self, uint32_t shard) {
  auto i = self->state.led.find(shard);
  if (i == self->state.led.end()) return;
  auto& s = i->second;
  auto& wanted = self->state.observers[shard];
  auto listed = [&](const std::string& m) {
    return std::find(wanted.begin(), wanted.end(), m) != wanted.end();
  };
  s.followers.erase(std::remove_if(s.followers.begin(), s.followers.end(),
                                   [&](const follower_state& f) {
                                     if (f.counts || listed(f.member))
                                       return false;
                                     s.left_generations[f.member] =
                                         f.generation;
                                     return true;
                                   }),
                    s.followers.end());
  for (auto& m : wanted) {
    if (m == self->state.cfg.member) continue;
    bool known = false;
    for (auto& f : s.followers) known |= f.member == m;
    if (known) continue;
    follower_state f{m};
    f.counts = false;
    if (auto g = s.left_generations.find(m); g != s.left_generations.end())
      f.generation = g->second + 1;
    s.followers.push_back(std::move(f));
  }
}

// Handles a follower's error: a newer epoch there ends this leadership;
// anything else (unreachable, timeout, a refused batch) resyncs it.
void on_follower_error(self_ptr self, uint32_t shard, follower_state& f,
                       const caf::error& err) {
  if (is(err, pe::errc::stale_epoch)) {
    step_down(self, shard,
              "replica " + f.member + " follows a newer epoch: " +
                  describe(err));
    return;
  }
  unsync(f);
}

void start_sync(self_ptr self, uint32_t shard, led_shard& s,
                follower_state& f) {
  auto peer = self->state.peers[f.member];
  if (!peer) return;  // unreachable: the next tick tries again
  f.syncing = true;
  auto epoch = s.epoch;
  auto gen = f.generation;
  auto member = f.member;
  auto timeout = std::chrono::milliseconds{self->state.cfg.request_timeout_ms};
  self->request(peer, timeout, repl_sync_atom::value, shard, epoch)
      .then(
          [=](const bytes& epochs_bytes, uint64_t end, bool voter) {
            auto* fs = find_follower(self, shard, epoch, member, gen);
            if (fs == nullptr) return;
            fs->voter = voter;
            auto epochs = decode_epochs(epochs_bytes);
            auto log = log_of(self, shard);
            if (!epochs) return unsync(*fs);
            auto mine = log.epochs();
            auto my_end = log.end_position();
            if (!mine || !my_end) return unsync(*fs);
            auto keep = pe::truncation_point(*epochs, end, *mine, *my_end);
            auto synced = [=](uint64_t at) {
              auto* fs2 = find_follower(self, shard, epoch, member, gen);
              if (fs2 == nullptr) return;
              fs2->syncing = false;
              fs2->synced = true;
              fs2->next = at + 1;
              fs2->durable = at;
              auto& s2 = self->state.led[shard];
              recompute_commit(self, shard, s2);
              pump(self, shard);
            };
            if (keep >= end) return synced(end);
            self->request(peer, timeout, repl_truncate_atom::value, shard,
                          epoch, keep)
                .then([=](uint64_t after) { synced(after); },
                      [=](caf::error& err) {
                        if (auto* fs2 =
                                find_follower(self, shard, epoch, member, gen))
                          on_follower_error(self, shard, *fs2, err);
                      });
          },
          [=](caf::error& err) {
            if (auto* fs = find_follower(self, shard, epoch, member, gen))
              on_follower_error(self, shard, *fs, err);
          });
}

using flush_atom = caf::atom_constant<caf::atom("mn_rflush")>;

// Marks `shard` as having something to ship; the next flush (after the
// messages already in the mailbox, so that the appends of one group commit
// share it) sends it.
void pump(self_ptr self, uint32_t shard) {
  auto& st = self->state;
  st.dirty.insert(shard);
  if (!st.flush_scheduled) {
    st.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

void take_answers(self_ptr self, const std::string& member,
                  const std::vector<sent_item>& sent, const bytes& buf);

// One follower's bundle under construction: its bytes start with the item
// count, written when it is sent.
struct outgoing {
  bytes buf = bytes(4, '\0');
  std::vector<sent_item> sent;
};

void send_bundle(self_ptr self, const std::string& member, outgoing& out) {
  if (out.sent.empty()) return;
  auto buf = std::move(out.buf);
  patch_u32(buf, 0, static_cast<uint32_t>(out.sent.size()));
  auto sent = std::move(out.sent);
  out = outgoing{};
  auto peer = self->state.peers[member];
  if (!peer) {  // gone meanwhile: synced again once it is back
    for (auto& item : sent)
      if (auto* fs = find_follower(self, item.shard, item.epoch, member,
                                   item.generation))
        unsync(*fs);
    return;
  }
  auto timeout = std::chrono::milliseconds{self->state.cfg.request_timeout_ms};
  self->request(peer, timeout, repl_append_atom::value, std::move(buf))
      .then(
          [=](const bytes& answers) { take_answers(self, member, sent, answers); },
          [=](caf::error& err) {
            for (auto& item : sent)
              if (auto* fs = find_follower(self, item.shard, item.epoch, member,
                                           item.generation))
                on_follower_error(self, item.shard, *fs, err);
            for (auto& item : sent) pump(self, item.shard);
          });
}

// Adds a batch for follower `f` of `shard` to its bundle.
void add_item(self_ptr self, std::map<std::string, outgoing>& out,
              uint32_t shard, led_shard& s, follower_state& f,
              const pe::log_batch& batch) {
  ++f.inflight;
  f.next = batch.end_position();
  f.commit_sent = s.commit;
  auto& o = out[f.member];
  // A batch that would take a bundle past the batch size goes in the next
  // one: a bundle is then at most one batch over it, and a batch of one
  // large record (at most journal_config::max_shard_record_bytes) travels
  // alone, within the members' message limit.
  if (!o.sent.empty() &&
      o.buf.size() + batch.bytes() > self->state.cfg.max_batch_bytes)
    send_bundle(self, f.member, o);
  put_bundle_item(o.buf, shard, s.epoch, s.commit, batch);
  o.sent.push_back(sent_item{shard, s.epoch, f.generation});
  if (o.buf.size() >= self->state.cfg.max_batch_bytes)
    send_bundle(self, f.member, o);
}

// Ships what the dirty shards' followers lack, one bundle per follower
// (each item a batch of one shard), and, with `heartbeat`, an empty batch
// to each idle follower that has not heard of its shard's commit point.
void flush(self_ptr self, bool heartbeat) {
  auto& st = self->state;
  st.flush_scheduled = false;
  auto shards = std::move(st.dirty);
  st.dirty.clear();
  auto& cfg = st.cfg;
  std::map<std::string, outgoing> out;
  for (auto shard : shards) {
    auto i = st.led.find(shard);
    if (i == st.led.end()) continue;
    auto& s = i->second;
    auto log = log_of(self, shard);
    for (auto& f : s.followers) {
      if (!f.synced) {
        if (!f.syncing) start_sync(self, shard, s, f);
        continue;
      }
      if (!st.peers[f.member]) {
        unsync(f);  // unreachable: synced again once it is back
        continue;
      }
      if (heartbeat && f.inflight == 0 && f.next > s.local_end &&
          f.commit_sent < s.commit)
        add_item(self, out, shard, s, f, pe::log_batch{0, f.next, {}});
      while (f.synced && f.inflight < cfg.max_inflight &&
             f.next <= s.local_end) {
        auto batch =
            log.read(f.next, cfg.max_batch_records, cfg.max_batch_bytes);
        if (!batch || batch->records.empty()) {
          // A hole or a read error: nothing to ship from here.
          unsync(f);
          break;
        }
        add_item(self, out, shard, s, f, *batch);
      }
    }
  }
  for (auto& [member, o] : out) send_bundle(self, member, o);
}

// A follower's answers to a bundle, item by item.
void take_answers(self_ptr self, const std::string& member,
                  const std::vector<sent_item>& sent, const bytes& buf) {
  auto answers = decode_answers(buf, sent.size());
  for (size_t k = 0; k < sent.size(); ++k) {
    auto& item = sent[k];
    auto* fs =
        find_follower(self, item.shard, item.epoch, member, item.generation);
    if (fs == nullptr) continue;
    if (!answers) {
      unsync(*fs);  // a malformed answer: sync it again
      pump(self, item.shard);
      continue;
    }
    auto& a = (*answers)[k];
    fs->voter = a.voter;
    if (a.code != 0) {
      on_follower_error(
          self, item.shard, *fs,
          to_caf_error(pe::error{static_cast<pe::errc>(a.code), a.what}));
    } else if (!a.accepted) {
      unsync(*fs);
    } else {
      --fs->inflight;
      fs->durable = std::max(fs->durable, a.end);
      recompute_commit(self, item.shard, self->state.led[item.shard]);
    }
    pump(self, item.shard);
  }
}

// A follower's answer to item `index` of bundle `bundle` (of `shard`): the
// bundle is answered once every item has one.
void answer_item(self_ptr self, uint64_t bundle, size_t index, uint32_t shard,
                 item_answer a) {
  auto& st = self->state;
  auto b = st.bundles.find(bundle);
  if (b == st.bundles.end()) return;
  a.voter = votes(self, shard);
  b->second.answers[index] = std::move(a);
  if (--b->second.remaining > 0) return;
  b->second.promise.deliver(encode_answers(b->second.answers));
  st.bundles.erase(b);
}

void tick(self_ptr self) {
  for (auto& entry : self->state.led) self->state.dirty.insert(entry.first);
  flush(self, true);
  self->delayed_send(self, std::chrono::milliseconds{self->state.cfg.tick_ms},
                     tick_atom::value);
}

// A shard's leader-to-be gathering its replicas' logs: it leads only with
// the most up-to-date log of a majority (which holds every acknowledged
// record), fetching what it lacks from the replica that has it.
struct recovery {
  uint32_t shard = 0;
  uint64_t epoch = 0;
  std::vector<std::string> followers;
  /// A majority must answer as voters (repl_lead_atom's `strict`).
  bool strict = false;
  caf::response_promise promise;
  size_t votes = 0;      // answers that count, this replica's own included
  size_t responded = 0;  // other replicas that answered, voting or not
  size_t failures = 0;
  bool decided = false;
  bool catching_up = false;
  // The most up-to-date log so far: (newest epoch, end), its owner (empty:
  // this replica) and its history.
  uint64_t best_epoch = 0;
  uint64_t best_end = 0;
  std::string best_member;
  std::vector<pe::epoch_start> best_history;
  std::string why;
};

using recovery_ptr = std::shared_ptr<recovery>;

void fail_recovery(recovery_ptr r, caf::error err) {
  if (r->decided) return;
  r->decided = true;
  r->promise.deliver(std::move(err));
}

// Starts leading with the log as it is now.
// Cancels the recovery of `shard`, if any: it will not lead.
void cancel_recovery(self_ptr self, uint32_t shard, const std::string& why) {
  auto i = self->state.recovering.find(shard);
  if (i == self->state.recovering.end()) return;
  auto r = i->second;
  self->state.recovering.erase(i);
  fail_recovery(r, make_error(errc::owner_unavailable,
                              "recovery of shard " + std::to_string(shard) +
                                  " cancelled: " + why));
}

void begin_leading(self_ptr self, recovery_ptr r) {
  if (r->decided) return;  // cancelled meanwhile
  self->state.recovering.erase(r->shard);
  auto log = log_of(self, r->shard);
  if (auto err = log.begin_epoch(r->epoch))
    return fail_recovery(r, to_caf_error(err));
  auto marker = log.append_marker(r->epoch);
  if (!marker) return fail_recovery(r, to_caf_error(marker.error()));
  // It holds every acknowledged record now (the most up-to-date log among
  // enough voters' answers, decide()): a learner votes again.
  stop_learning(self, r->shard, UINT64_MAX);
  led_shard s;
  s.epoch = r->epoch;
  s.local_end = *marker;
  s.epoch_start = *marker;
  for (auto& m : r->followers) s.followers.push_back(follower_state{m});
  self->state.led[r->shard] = std::move(s);
  set_observers(self, r->shard);
  self->state.gate->lead(r->shard, r->epoch);
  recompute_commit(self, r->shard, self->state.led[r->shard]);
  pump(self, r->shard);
  r->decided = true;
  r->promise.deliver(caf::unit);
}

// Fetches the best replica's records this log lacks, then leads.
void catch_up(self_ptr self, recovery_ptr r) {
  if (r->decided) return;  // cancelled meanwhile
  auto log = log_of(self, r->shard);
  auto end = log.end_position();
  if (!end) return fail_recovery(r, to_caf_error(end.error()));
  if (*end >= r->best_end) return begin_leading(self, r);
  auto peer = self->state.peers[r->best_member];
  if (!peer)
    return fail_recovery(
        r, make_error(errc::owner_unavailable,
                      "replica " + r->best_member + " holds records of shard " +
                          std::to_string(r->shard) +
                          " that this one lacks and cannot be reached"));
  auto timeout = std::chrono::milliseconds{self->state.cfg.request_timeout_ms};
  self->request(peer, timeout, repl_read_atom::value, r->shard, *end + 1,
                uint64_t{self->state.cfg.max_batch_records})
      .then(
          [=](const bytes& buf) {
            auto batch = decode_batch(buf);
            if (!batch) return fail_recovery(r, batch.error());
            if (batch->records.empty())
              return fail_recovery(
                  r, make_error(errc::owner_unavailable,
                                "replica " + r->best_member +
                                    " no longer has the records it announced"));
            if (auto err = log_of(self, r->shard).apply(std::move(*batch),
                                                         r->epoch))
              return fail_recovery(r, to_caf_error(err));
            catch_up(self, r);
          },
          [=](caf::error& err) { fail_recovery(r, err); });
}

// Decides once a majority answered: truncates this log to where it parts
// from the best one, then catches up with it.
void decide(self_ptr self, recovery_ptr r) {
  if (r->decided || r->catching_up) return;
  // Two conditions. Every replica that answered promised the epoch: a
  // majority of answers fences the older leaders. And the voters that
  // answered must meet every majority that can have acknowledged a record
  // (learners' acknowledgements count there, but a learner may have lost
  // what it acknowledged): n - majority + 1 of them, which is the majority
  // for an odd n, and fewer for an even one (one of two: with two
  // replicas, the voter holds every record both acknowledged).
  auto n = r->followers.size() + 1;
  auto majority = n / 2 + 1;
  auto voters_needed = r->strict ? majority : n - majority + 1;
  auto answered = 1 + r->responded;  // this replica promised first
  if (r->votes < voters_needed || answered < majority) {
    auto pending = r->followers.size() - r->responded - r->failures;
    if (r->votes + pending < voters_needed || answered + pending < majority)
      fail_recovery(r, make_error(errc::owner_unavailable,
                                  "shard " + std::to_string(r->shard) +
                                      ": no majority of its replicas answered "
                                      "as voters (" + r->why + ")"));
    return;
  }
  if (r->best_member.empty()) return begin_leading(self, r);
  auto log = log_of(self, r->shard);
  auto mine = log.epochs();
  auto end = log.end_position();
  if (!mine || !end)
    return fail_recovery(r, make_error(errc::invalid_argument,
                                       "cannot read shard " +
                                           std::to_string(r->shard)));
  auto keep = pe::truncation_point(*mine, *end, r->best_history, r->best_end);
  if (keep < *end)
    if (auto err = log.truncate_after(keep))
      return fail_recovery(r, to_caf_error(err));
  r->catching_up = true;
  catch_up(self, r);
}

// Starts recovering `shard` to lead it in `epoch` (repl_lead_atom).
caf::result<void> lead_shard(self_ptr self, uint32_t shard, uint64_t epoch,
                             const std::vector<std::string>& followers,
                             bool strict) {
  // Promise the epoch here too: from now on this replica refuses the
  // older leaders' batches.
  auto log = log_of(self, shard);
  if (auto err = log.apply(pe::log_batch{0, 1, {}}, epoch))
    return to_caf_error(err);
  auto mine = log.epochs();
  auto end = log.end_position();
  if (!mine || !end)
    return make_error(errc::invalid_argument,
                      "cannot read shard " + std::to_string(shard));
  cancel_recovery(self, shard, "a newer request to lead");
  auto r = std::make_shared<recovery>();
  self->state.recovering[shard] = r;
  r->shard = shard;
  r->epoch = epoch;
  r->followers = followers;
  r->strict = strict;
  r->promise = self->make_response_promise();
  r->best_epoch = mine->empty() ? 0 : mine->back().epoch;
  r->best_end = *end;
  if (votes(self, shard))
    r->votes = 1;
  else
    r->why += self->state.cfg.member + " (this replica): a learner; ";
  auto timeout = std::chrono::milliseconds{self->state.cfg.request_timeout_ms};
  for (auto& member : followers) {
    auto peer = self->state.peers[member];
    if (!peer) {
      ++r->failures;
      r->why += member + ": unreachable; ";
      continue;
    }
    self->request(peer, timeout, repl_sync_atom::value, shard, epoch)
        .then(
            [=](const bytes& epochs_bytes, uint64_t their_end, bool voter) {
              auto epochs = decode_epochs(epochs_bytes);
              if (!epochs) {
                ++r->failures;
                r->why += member + ": malformed answer; ";
                return decide(self, r);
              }
              // A learner's log is a replica's log like any other
              // (it may even be the longest), but it may lack what
              // its member held before its data was replaced: it
              // does not count towards the majority.
              ++r->responded;
              if (voter)
                ++r->votes;
              else
                r->why += member + ": a learner; ";
              auto newest = epochs->empty() ? 0 : epochs->back().epoch;
              if (std::make_pair(newest, their_end) >
                  std::make_pair(r->best_epoch, r->best_end)) {
                r->best_epoch = newest;
                r->best_end = their_end;
                r->best_member = member;
                r->best_history = std::move(*epochs);
              }
              decide(self, r);
            },
            [=](caf::error& err) {
              ++r->failures;
              r->why += member + ": " + describe(err) + "; ";
              decide(self, r);
            });
  }
  decide(self, r);
  return r->promise;
}

caf::behavior replicator(self_ptr self, pe::journal* journal,
                         std::shared_ptr<shard_gate> gate,
                         replicator_settings cfg) {
  self->state.journal = journal;
  self->state.gate = gate;
  self->state.cfg = std::move(cfg);
  self->state.identity_known = !self->state.cfg.await_identity;
  // The commit points learnt before a restart (kept with the batches that
  // carried them): the watcher's read models of shard logs follow them
  // before any leader speaks again.
  if (auto known = pe::replica_log::committed_points(*journal))
    self->state.committed = std::move(*known);
  else
    print_line("{\"event\":\"replica_commit_points_unreadable\",\"member\":\"" +
               self->state.cfg.member +
               "\",\"detail\":\"read models of shard logs wait for the "
               "leaders\"}");
  auto weak = caf::actor_cast<caf::weak_actor_ptr>(self);
  gate->on_local_append([weak](uint32_t shard, uint64_t position) {
    if (auto strong = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong),
                     local_append_atom::value, shard, position);
  });
  self->send(self, tick_atom::value);
  return {
      // -- local control ------------------------------------------------------
      [=](repl_peer_atom, const std::string& member, const caf::actor& peer) {
        auto& known = self->state.peers[member];
        bool changed = known != peer;
        known = peer;
        // Unreachable, or reached anew (it may have restarted, even with an
        // empty directory): sync it again before it gets records.
        if (changed)
          for (auto& [shard, s] : self->state.led)
            for (auto& f : s.followers)
              if (f.member == member) unsync(f);
      },
      [=](repl_lead_atom, uint32_t shard, uint64_t epoch,
          const std::vector<std::string>& followers) -> caf::result<void> {
        return lead_shard(self, shard, epoch, followers, false);
      },
      [=](repl_lead_atom, uint32_t shard, uint64_t epoch,
          const std::vector<std::string>& followers,
          bool strict) -> caf::result<void> {
        return lead_shard(self, shard, epoch, followers, strict);
      },
      [=](repl_read_atom, uint32_t shard, uint64_t from,
          uint64_t max_records) -> caf::result<bytes> {
        auto batch = log_of(self, shard).read(
            from, std::min<uint64_t>(max_records, 4096),
            self->state.cfg.max_batch_bytes);
        if (!batch) return to_caf_error(batch.error());
        return encode_batch(*batch);
      },
      [=](repl_follow_atom, uint32_t shard, const std::string& leader) {
        cancel_recovery(self, shard, "now following " + leader);
        if (self->state.led.count(shard) > 0)
          step_down(self, shard, "now following " + leader);
      },
      [=](repl_resign_atom, uint32_t shard) {
        cancel_recovery(self, shard, "resigned");
        step_down(self, shard, "resigned");
      },
      [=](repl_status_atom, uint32_t shard) {
        auto end = log_of(self, shard).end_position();
        auto i = self->state.led.find(shard);
        if (i != self->state.led.end())
          return caf::make_message(true, i->second.epoch, end ? *end : 0,
                                   i->second.commit);
        auto promised = log_of(self, shard).promised_epoch();
        auto c = self->state.committed.find(shard);
        return caf::make_message(
            false, promised ? *promised : 0, end ? *end : 0,
            c == self->state.committed.end() ? uint64_t{0} : c->second);
      },
      [=](repl_ready_atom, uint32_t shard, const std::string& member) {
        auto i = self->state.led.find(shard);
        if (i == self->state.led.end()) return false;
        for (auto& f : i->second.followers)
          if (f.member == member)
            return f.synced && f.voter && f.durable >= i->second.commit;
        return false;
      },
      [=](repl_marker_committed_atom, uint32_t shard, uint64_t epoch) {
        auto i = self->state.led.find(shard);
        return i != self->state.led.end() && i->second.epoch == epoch &&
               i->second.commit >= i->second.epoch_start;
      },
      [=](repl_observers_atom, uint32_t shard,
          const std::vector<std::string>& members) {
        self->state.observers[shard] = members;
        if (self->state.led.count(shard) > 0) {
          set_observers(self, shard);
          pump(self, shard);
        }
      },
      [=](repl_leading_atom) {
        std::vector<uint64_t> out;
        for (auto& [shard, s] : self->state.led) {
          out.push_back(shard);
          out.push_back(s.epoch);
        }
        return out;
      },
      [=](local_append_atom, uint32_t shard, uint64_t) {
        auto position = self->state.gate->take_announced(shard);
        auto i = self->state.led.find(shard);
        if (i == self->state.led.end()) return;
        i->second.local_end = std::max(i->second.local_end, position);
        recompute_commit(self, shard, i->second);
        pump(self, shard);
      },
      [=](tick_atom) { tick(self); },
      [=](repl_identity_atom,
          const std::vector<uint64_t>& pairs) -> caf::result<void> {
        std::vector<std::pair<uint32_t, uint64_t>> learners;
        for (size_t i = 0; i + 1 < pairs.size(); i += 2)
          learners.emplace_back(static_cast<uint32_t>(pairs[i]), pairs[i + 1]);
        if (!learners.empty()) {
          if (auto err = pe::replica_log::mark_learners(*self->state.journal,
                                                         learners))
            return to_caf_error(err);
          for (auto& [shard, epoch] : learners) {
            self->state.roles[shard] = role::learner;
            self->state.learner_epochs[shard] = epoch;
            // The lost copy's promise went with it: promise the epoch again,
            // so that a leader older than that (deposed without knowing it)
            // cannot count this copy towards acknowledging its appends.
            auto err = log_of(self, shard).apply(pe::log_batch{0, 1, {}}, epoch);
            if (err && err.code() != pe::errc::stale_epoch)
              return to_caf_error(err);
          }
        }
        self->state.identity_known = true;
        return caf::unit;
      },
      [=](voter_atom, uint32_t shard, bool ok) {
        auto& r = self->state.roles[shard];
        if (r == role::clearing) r = ok ? role::voter : role::learner;
      },
      [=](repl_watch_atom) {
        auto& st = self->state;
        st.watcher = caf::actor_cast<caf::actor>(self->current_sender());
        if (st.watcher)
          for (auto& [shard, position] : st.committed)
            self->send(st.watcher, repl_committed_atom::value, shard, position);
      },
      // -- follower side -------------------------------------------------------
      [=](repl_sync_atom, uint32_t shard,
          uint64_t epoch) -> caf::result<bytes, uint64_t, bool> {
        if (!self->state.identity_known)
          return identity_unknown(self);
        auto log = log_of(self, shard);
        // Promise the epoch first: from now on older leaders are refused.
        if (auto err = log.apply(pe::log_batch{0, 1, {}}, epoch))
          return to_caf_error(err);
        cancel_recovery(self, shard,
                        "a leader of epoch " + std::to_string(epoch) +
                            " synced this replica");
        if (self->state.led.count(shard) > 0)
          step_down(self, shard, "a leader of epoch " + std::to_string(epoch) +
                                     " synced this replica");
        auto epochs = log.epochs();
        if (!epochs) return to_caf_error(epochs.error());
        auto end = log.end_position();
        if (!end) return to_caf_error(end.error());
        return caf::result<bytes, uint64_t, bool>{encode_epochs(*epochs), *end,
                                                  votes(self, shard)};
      },
      [=](repl_truncate_atom, uint32_t shard, uint64_t epoch,
          uint64_t keep) -> caf::result<uint64_t> {
        auto log = log_of(self, shard);
        auto promised = log.promised_epoch();
        if (!promised) return to_caf_error(promised.error());
        if (epoch != *promised)
          return to_caf_error(pe::error{
              pe::errc::stale_epoch,
              "truncation by the leader of epoch " + std::to_string(epoch) +
                  " refused: shard " + std::to_string(shard) +
                  " follows epoch " + std::to_string(*promised)});
        if (auto err = log.truncate_after(keep)) return to_caf_error(err);
        auto end = log.end_position();
        if (!end) return to_caf_error(end.error());
        return *end;
      },
      [=](repl_append_atom, const bytes& buf) -> caf::result<bytes> {
        // Until then this copy may have lost its data and its promises: it
        // must not help an older leader acknowledge anything.
        if (!self->state.identity_known) return identity_unknown(self);
        auto items = decode_bundle(buf);
        if (!items) return std::move(items.error());
        auto& st = self->state;
        auto bundle_id = st.next_bundle++;
        auto& b = st.bundles[bundle_id];
        b.promise = self->make_response_promise();
        b.answers.resize(items->size());
        b.remaining = items->size();
        auto promise = b.promise;
        if (items->empty()) {
          st.bundles.erase(bundle_id);
          promise.deliver(encode_answers({}));
          return promise;
        }
        auto weak_self = caf::actor_cast<caf::weak_actor_ptr>(self);
        for (size_t k = 0; k < items->size(); ++k) {
          auto& item = (*items)[k];
          if (item.batch.records.empty()) {
            // A commit point alone: it must name this log's end, or the
            // leader's idea of this replica is wrong (it restarted, lost its
            // data, or was truncated): refuse, so that it syncs again; the
            // commit point is taken only up to what is here.
            auto end = log_of(self, item.shard).end_position();
            if (!end || item.batch.first_position != *end + 1) {
              item_answer a;
              a.end = end ? *end : 0;
              answer_item(self, bundle_id, k, item.shard, std::move(a));
              continue;
            }
          }
          auto id = st.next_apply++;
          st.applies.emplace(
              id, pending_apply{item.shard, item.batch.end_position() - 1,
                                item.commit, bundle_id, k, item.epoch});
          // Each item joins the writer's queue in order: the shard's batches
          // apply in the order they were sent, and all of them share group
          // commits with each other and with the member's own appends.
          log_of(self, item.shard)
              .apply(
                  std::move(item.batch), item.epoch,
                  [weak_self, id](pe::error err) {
                    if (auto strong = weak_self.lock())
                      caf::anon_send(caf::actor_cast<caf::actor>(strong),
                                     applied_atom::value, id,
                                     static_cast<uint8_t>(err.code()),
                                     err.message());
                  },
                  item.commit);
        }
        return promise;
      },
      [=](applied_atom, uint64_t id, uint8_t code, const std::string& what) {
        auto& st = self->state;
        auto i = st.applies.find(id);
        if (i == st.applies.end()) return;
        auto pending = i->second;
        st.applies.erase(i);
        item_answer a;
        auto errc = static_cast<pe::errc>(code);
        if (errc == pe::errc::none) {
          // Durable here up to the batch's end, which the leader's commit
          // point may be taken as far as.
          note_commit(self, pending.shard,
                      std::min(pending.commit, pending.end));
          // A learner holding the leader's log up to its commit point holds
          // every acknowledged record (the commit point counts from the
          // leader's epoch marker, after every older committed record).
          if (pending.commit > 0 && pending.end >= pending.commit)
            stop_learning(self, pending.shard, pending.epoch);
          a.end = pending.end;
          a.accepted = true;
        } else if (errc == pe::errc::log_mismatch) {
          // Does not continue the log here: the leader syncs it again.
          auto end = log_of(self, pending.shard).end_position();
          a.end = end ? *end : 0;
        } else {
          a.code = code;
          a.what = what;
        }
        answer_item(self, pending.bundle, pending.index, pending.shard,
                    std::move(a));
      },
      [=](flush_atom) { flush(self, false); },
  };
}

}  // namespace

caf::actor spawn_replicator(caf::actor_system& sys, pe::journal& journal,
                            std::shared_ptr<shard_gate> gate,
                            replicator_settings settings) {
  return sys.spawn(replicator, &journal, std::move(gate), std::move(settings));
}

}  // namespace mnemo::runtime::replication

#include "mnemo/persistence/journal.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>

#include "head_log.hpp"
#include "journal_impl.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/persistence/stream_export.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "record_codec.hpp"

namespace fs = std::filesystem;

namespace mnemo::persistence {

namespace {

constexpr unsigned max_databases = 16;

error check_directory(const journal_config& cfg) {
  if (cfg.directory.empty())
    return error{errc::invalid_argument, "journal_config::directory is empty"};
  std::error_code ec;
  fs::path dir{cfg.directory};
  auto st = fs::status(dir, ec);
  if (st.type() == fs::file_type::not_found) {
    if (cfg.read_only)
      return error{errc::not_found,
                   "data directory '" + cfg.directory + "' does not exist"};
    if (!fs::create_directory(dir, ec) && ec)
      return error{errc::storage_error, "cannot create data directory '" +
                                            cfg.directory +
                                            "': " + ec.message()};
    return {};
  }
  if (ec)
    return error{errc::storage_error,
                 "cannot stat '" + cfg.directory + "': " + ec.message()};
  if (st.type() != fs::file_type::directory)
    return error{errc::format_mismatch,
                 "'" + cfg.directory +
                     "' is not a directory; pass a mnemo data directory"};
  if (cfg.read_only && !fs::exists(dir / "data.mdb"))
    return error{errc::format_mismatch,
                 "directory '" + cfg.directory +
                     "' holds no mnemo journal (data.mdb); pass a mnemo "
                     "data directory"};
  auto only_lock_file = [&] {
    for (auto& entry : fs::directory_iterator{dir, ec})
      if (entry.path().filename() != "mnemo.lock") return false;
    return true;
  };
  if (!fs::exists(dir / "data.mdb") && !only_lock_file())
    return error{errc::format_mismatch,
                 "directory '" + cfg.directory +
                     "' is not empty and holds no mnemo journal (data.mdb); "
                     "pass an empty or a mnemo data directory"};
  return {};
}

// Takes the directory's write lock: one writing process per directory (a
// second writer would work from stale cached heads). The lock goes with
// the process, also on kill -9.
error lock_directory(const journal_config& cfg, int& fd) {
  auto path = (fs::path{cfg.directory} / "mnemo.lock").string();
  fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return error{errc::storage_error, "cannot open lock file '" + path +
                                          "': " + std::strerror(errno)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    auto code = errno;
    char buf[32] = {};
    auto n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
      holder.pop_back();
    ::close(fd);
    fd = -1;
    if (code == EWOULDBLOCK)
      return error{errc::directory_in_use,
                   "data directory '" + cfg.directory +
                       "' is in use by another process (pid " + holder +
                       "); stop it, or open the directory read-only"};
    return error{errc::storage_error,
                 "cannot lock '" + path + "': " + std::strerror(code)};
  }
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above; the lock itself holds.
  }
  return {};
}

// The data directories this process has open, by device and inode. LMDB
// allows one environment per directory and process: closing a second one
// would drop the POSIX locks of the first (lmdb.h, "caveats").
std::mutex open_dirs_mtx;
std::map<std::pair<dev_t, ino_t>, bool> open_dirs;  // -> opened writable

error claim_directory(const journal_config& cfg,
                      std::optional<std::pair<dev_t, ino_t>>& claimed) {
  struct stat st {};
  if (::stat(cfg.directory.c_str(), &st) != 0) return {};  // open reports it
  std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
  std::lock_guard<std::mutex> guard{open_dirs_mtx};
  if (auto i = open_dirs.find(key); i != open_dirs.end())
    return error{errc::directory_in_use,
                 "data directory '" + cfg.directory +
                     "' is already open in this process (pid " +
                     std::to_string(::getpid()) + ", " +
                     (i->second ? "writable" : "read-only") +
                     "); LMDB allows one open per directory and process: "
                     "share that journal, or close it before opening again"};
  open_dirs.emplace(key, !cfg.read_only);
  claimed = key;
  return {};
}

void release_directory(const std::optional<std::pair<dev_t, ino_t>>& claimed) {
  if (!claimed) return;
  std::lock_guard<std::mutex> guard{open_dirs_mtx};
  open_dirs.erase(*claimed);
}

}  // namespace

const char* to_string(durability x) noexcept {
  switch (x) {
    case durability::sync:
      return "sync";
    case durability::nometasync:
      return "nometasync";
    case durability::nosync:
      return "nosync";
  }
  return "?";
}

int64_t now_micros() noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch())
      .count();
}

void encode_head(const head_record& head, char* out) noexcept {
  put_be64(out, head.highest);
  put_be64(out + 8, head.deleted_to);
  put_be64(out + 16, head.last_position);
}

namespace {

bool decode_head(const MDB_val& val, head_record& out) noexcept {
  if (val.mv_size != 24) return false;
  auto* p = static_cast<const char*>(val.mv_data);
  out.highest = get_be64(p);
  out.deleted_to = get_be64(p + 8);
  out.last_position = get_be64(p + 16);
  return true;
}

error corrupt_head(std::string_view stream) {
  return error{errc::corrupt_record, "corrupt head record of stream '" +
                                         std::string{stream} +
                                         "'; restore a backup"};
}

}  // namespace

error read_head(detail::txn_state& st, std::string_view stream,
                head_record& out) {
  out = head_record{};
  bool logged = false;
  if (auto err = find_logged_head(st, stream, out, logged)) return err;
  if (logged) return {};
  auto key = to_val(stream);
  MDB_val val;
  auto rc = mdb_get(st.txn, st.dbs->streams, &key, &val);
  if (rc == MDB_NOTFOUND) return {};
  if (auto err = st.check(rc, "mdb_get (stream head)")) return err;
  if (!decode_head(val, out)) return corrupt_head(stream);
  return {};
}

// -- setup --------------------------------------------------------------------

error journal::impl::open_env() {
  if (auto rc = mdb_env_create(&env)) return lmdb_error(rc, "mdb_env_create");
  mdb_env_set_maxdbs(env, max_databases);
  mdb_env_set_maxreaders(env, cfg.max_readers);
  mdb_env_set_mapsize(env, cfg.initial_map_size);
  // MDB_NOMEMINIT: LMDB need not zero unused page space before writing.
  unsigned flags = MDB_NOTLS | MDB_NOMEMINIT;
  if (cfg.read_only) flags |= MDB_RDONLY;
  if (cfg.mode == durability::nometasync)
    flags |= MDB_NOMETASYNC;
  else if (cfg.mode == durability::nosync)
    flags |= MDB_NOSYNC;
  if (auto rc = mdb_env_open(env, cfg.directory.c_str(), flags, 0644))
    return lmdb_error(rc, "mdb_env_open('" + cfg.directory + "')");
  // Free reader slots left behind by processes that died (kill -9).
  int dead = 0;
  mdb_reader_check(env, &dead);
  MDB_envinfo info;
  mdb_env_info(env, &info);
  map_size = info.me_mapsize;
  return {};
}

error journal::impl::open_databases() {
  detail::txn_state st;
  st.dbs = &dbs;
  auto rc =
      mdb_txn_begin(env, nullptr, cfg.read_only ? MDB_RDONLY : 0, &st.txn);
  if (rc != 0) return lmdb_error(rc, "mdb_txn_begin (open)");
  auto abort = [&](error err) {
    mdb_txn_abort(st.txn);
    return err;
  };
  // A mnemo directory has the meta database; an LMDB environment without it
  // but with other data is someone else's.
  MDB_dbi main_dbi;
  if (auto rc2 = mdb_dbi_open(st.txn, nullptr, 0, &main_dbi))
    return abort(lmdb_error(rc2, "mdb_dbi_open(main)"));
  MDB_stat main_stat;
  mdb_stat(st.txn, main_dbi, &main_stat);
  unsigned create = cfg.read_only ? 0 : MDB_CREATE;
  rc = mdb_dbi_open(st.txn, "mnemo.meta", 0, &dbs.meta);
  bool fresh = false;
  if (rc == MDB_NOTFOUND) {
    if (main_stat.ms_entries > 0 || cfg.read_only)
      return abort(error{errc::format_mismatch,
                         "'" + cfg.directory +
                             "' is an LMDB environment but not a mnemo "
                             "journal (no mnemo.meta database)"});
    fresh = true;
    rc = mdb_dbi_open(st.txn, "mnemo.meta", MDB_CREATE, &dbs.meta);
  }
  if (rc != 0) return abort(lmdb_error(rc, "mdb_dbi_open(mnemo.meta)"));
  struct named {
    const char* name;
    MDB_dbi* dbi;
  };
  for (auto [name, dbi] : {named{"mnemo.events", &dbs.events},
                           named{"mnemo.stream_index", &dbs.stream_index},
                           named{"mnemo.streams", &dbs.streams},
                           named{"mnemo.event_ids", &dbs.event_ids},
                           named{"mnemo.tags", &dbs.tags},
                           named{"mnemo.snapshots", &dbs.snapshots},
                           named{"mnemo.offsets", &dbs.offsets}}) {
    if (auto rc2 = mdb_dbi_open(st.txn, name, create, dbi))
      return abort(lmdb_error(rc2, std::string{"mdb_dbi_open("} + name + ")"));
  }
  // Added to format 1 later (docs/format.md, 6): a directory written before
  // lacks them. A writable open creates them; a read-only open leaves the
  // handle 0, which reads as empty.
  for (auto [name, dbi] : {named{"mnemo.tables", &dbs.tables},
                           named{"mnemo.dead_letters", &dbs.dead_letters},
                           named{"mnemo.head_log", &dbs.head_log},
                           named{"mnemo.shard_log", &dbs.shard_log}}) {
    auto rc2 = mdb_dbi_open(st.txn, name, create, dbi);
    if (rc2 == MDB_NOTFOUND && cfg.read_only)
      *dbi = 0;
    else if (rc2 != 0)
      return abort(lmdb_error(rc2, std::string{"mdb_dbi_open("} + name + ")"));
  }
  MDB_val key = to_val("format_version");
  MDB_val val;
  if (fresh) {
    be64_key version{written_format};
    auto v = version.val();
    if (auto rc2 = mdb_put(st.txn, dbs.meta, &key, &v, 0))
      return abort(lmdb_error(rc2, "mdb_put(format_version)"));
  } else {
    rc = mdb_get(st.txn, dbs.meta, &key, &val);
    if (rc != 0 || val.mv_size != 8)
      return abort(error{
          errc::format_mismatch,
          "'" + cfg.directory + "' has no readable mnemo format version"});
    auto stored = get_be64(static_cast<const char*>(val.mv_data));
    if (stored < 1 || stored > written_format)
      return abort(
          error{errc::format_mismatch,
                "'" + cfg.directory + "' has on-disk format version " +
                    std::to_string(stored) + "; this build reads 1 to " +
                    std::to_string(written_format) + " (see docs/format.md)"});
    stored_format = stored;
    if (stored < written_format && !cfg.read_only) {
      stored_format = written_format;
      // Format 1 is format 2 with an empty head log (created above); format
      // 2 is format 3 with more checkpoints, which reads ignore and
      // deletions remove.
      be64_key version{written_format};
      auto v = version.val();
      if (auto rc2 = mdb_put(st.txn, dbs.meta, &key, &v, 0))
        return abort(lmdb_error(rc2, "mdb_put(format_version)"));
    }
    key = to_val("head");
    if (mdb_get(st.txn, dbs.meta, &key, &val) == 0 && val.mv_size == 8)
      head = get_be64(static_cast<const char*>(val.mv_data));
  }
  // The directory's identity (docs/format.md 2.1): made once, when the
  // directory is created (or by the first writable open of an older one);
  // a replicated cluster tells a member whose data was replaced by it.
  key = to_val("replica_id");
  if (mdb_get(st.txn, dbs.meta, &key, &val) == 0 && val.mv_size == 16) {
    replica_id.assign(static_cast<const char*>(val.mv_data), 16);
  } else if (!cfg.read_only) {
    auto id = event_id::make_v7();
    replica_id.assign(reinterpret_cast<const char*>(id.bytes.data()), 16);
    MDB_val v{replica_id.size(), replica_id.data()};
    if (auto rc2 = mdb_put(st.txn, dbs.meta, &key, &v, 0))
      return abort(lmdb_error(rc2, "mdb_put(replica_id)"));
  }
  // Commit even a read-only transaction: LMDB closes the database handles
  // opened in a transaction that is aborted.
  return lmdb_error(mdb_txn_commit(st.txn), "mdb_txn_commit (open)");
}

// -- construction -------------------------------------------------------------

journal::journal(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

expected<std::unique_ptr<journal>> journal::open(journal_config cfg) {
  if (auto err = check_directory(cfg)) return err;
  std::optional<std::pair<dev_t, ino_t>> claimed;
  if (auto err = claim_directory(cfg, claimed)) return err;
  int lock_fd = -1;
  if (!cfg.read_only)
    if (auto err = lock_directory(cfg, lock_fd)) {
      release_directory(claimed);
      return err;
    }
  std::unique_ptr<journal> result{new journal(nullptr)};
  result->impl_ = std::make_unique<impl>(*result, std::move(cfg));
  auto& d = *result->impl_;
  d.lock_fd = lock_fd;
  d.claimed = claimed;
  auto err = d.open_env();
  if (!err) err = d.open_databases();
  if (!err && !d.cfg.read_only) err = d.count_head_log();
  if (err) {
    if (d.env != nullptr) mdb_env_close(d.env);
    d.env = nullptr;
    return err;  // ~journal releases the lock
  }
  if (!d.cfg.read_only) {
    d.completer = std::thread{[&d] { d.complete(); }};
    ::pthread_setname_np(d.completer.native_handle(), "mnemo-complete");
    d.writer = std::thread{[&d] { d.run(); }};
    // Named for top -H, perf and gdb.
    ::pthread_setname_np(d.writer.native_handle(), "mnemo-journal");
  }
  return result;
}

journal::~journal() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->writer.joinable()) impl_->writer.join();
  {
    std::lock_guard<std::mutex> guard{impl_->done_mtx};
    impl_->done_stopping = true;
  }
  impl_->done_cv.notify_all();
  if (impl_->completer.joinable()) impl_->completer.join();
  if (impl_->env != nullptr) mdb_env_close(impl_->env);
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
  release_directory(impl_->claimed);
}

// -- writes -------------------------------------------------------------------

namespace {

// Checks `events` and encodes them into `req` (whose stream is set).
error prepare(append_request& req, std::vector<new_event>& events) {
  size_t body_bound = 0;
  bool has_tags = false;
  for (auto& ev : events) {
    if (ev.type.empty())
      return error{
          errc::invalid_argument,
          "an event for stream '" + req.stream + "' has an empty type name"};
    for (auto& tag : ev.tags)
      if (auto err = check_name(tag, "tag")) return err;
    has_tags |= !ev.tags.empty();
    body_bound += event_body_size_bound(req.stream, ev);
  }
  // One allocation each, whatever the batch size.
  req.events.reserve(events.size());
  req.results.reserve(events.size());
  req.bodies.reserve(body_bound);
  if (has_tags) req.tags.reserve(events.size());
  for (auto& ev : events) {
    auto supplied = !ev.id.is_nil();
    if (!supplied) ev.id = event_id::make_v7();
    req.has_supplied_ids |= supplied;
    encode_event_body(req.stream, ev, req.bodies);
    req.events.push_back({ev.id, req.bodies.size(), supplied});
    if (has_tags) req.tags.push_back(std::move(ev.tags));
  }
  if (req.has_supplied_ids) {
    std::vector<event_id> sorted;
    sorted.reserve(req.events.size());
    for (auto& item : req.events) sorted.push_back(item.id);
    std::sort(sorted.begin(), sorted.end());
    auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end())
      return error{errc::invalid_argument, "event id " + dup->to_string() +
                                               " appears twice in one batch"};
  }
  return {};
}

// Fails an append to a shard's log whose events would be records larger
// than `limit` (0: none).
error check_record_sizes(const append_request& req, size_t limit) {
  if (limit == 0 || req.shard == no_shard) return {};
  size_t begin = 0;
  for (size_t i = 0; i < req.events.size(); ++i) {
    auto size = record_header_size + req.events[i].body_end - begin;
    begin = req.events[i].body_end;
    if (size > limit)
      return error{errc::invalid_argument,
                   "event " + std::to_string(i + 1) + " of an append to '" +
                       req.stream + "' would be a record of " +
                       std::to_string(size) + " bytes; records of shard " +
                       std::to_string(req.shard) +
                       " travel to its other replicas in one message and "
                       "may have at most " +
                       std::to_string(limit) +
                       " (the cluster's max_message_bytes, less overhead)"};
  }
  return {};
}

// An append to a shard's log with a gate: asks it to admit `req` (in the
// epoch it names) and makes `done` wait until the shard's majority holds
// the append. Returns false, having failed `done`, if the gate refuses.
bool through_gate(const std::shared_ptr<replication_gate>& gate,
                  append_request& req, append_handler& done) {
  if (!gate || req.shard == no_shard) return true;
  auto epoch = gate->admit(req.shard);
  if (!epoch) {
    done(std::move(epoch).error());
    return false;
  }
  req.shard_epoch = *epoch;
  done = [gate, shard = req.shard, epoch = *epoch,
          done = std::move(done)](expected<append_result> res) mutable {
    if (!res) return done(std::move(res));
    auto position = res->shard_position;
    gate->wait_committed(
        shard, epoch, position,
        [res = std::move(res), done = std::move(done)](error err) mutable {
          if (err)
            done(std::move(err));
          else
            done(std::move(res));
        });
  };
  return true;
}

}  // namespace

void journal::append(std::string stream, std::vector<new_event> events,
                     expected_version expected, append_handler done) {
  if (auto err = check_name(stream, "stream id")) return done(std::move(err));
  if (events.empty())
    return done(error{errc::invalid_argument,
                      "append to stream '" + stream + "' has no events"});
  append_request req;
  req.stream = std::move(stream);
  req.expected = expected;
  if (auto err = prepare(req, events)) return done(std::move(err));
  if (impl_->cfg.shard_of)
    if (auto shard = impl_->cfg.shard_of(req.stream)) req.shard = *shard;
  if (auto err = check_record_sizes(req, impl_->cfg.max_shard_record_bytes))
    return done(std::move(err));
  if (!through_gate(impl_->cfg.gate, req, done)) return;
  req.done = std::move(done);
  impl_->enqueue(std::move(req));
}

void journal::append_snapshot(uint32_t shard, snapshot snap, uint64_t keep,
                              write_handler done) {
  std::vector<new_event> events(1);
  events[0].type = std::string{shard_snapshot_type};
  events[0].payload = encode_shard_snapshot(snap, keep);
  append_request req;
  req.stream = shard_stream(shard);
  if (auto err = prepare(req, events)) return done(std::move(err));
  req.shard = shard;
  if (auto err = check_record_sizes(req, impl_->cfg.max_shard_record_bytes))
    return done(std::move(err));
  req.snapshot = std::make_unique<snapshot_write>(
      snapshot_write{std::move(snap), keep});
  append_handler appended = [done = std::move(done)](
                                expected<append_result> res) {
    done(res ? error{} : std::move(res).error());
  };
  if (!through_gate(impl_->cfg.gate, req, appended)) return;
  req.done = std::move(appended);
  impl_->enqueue(std::move(req));
}

void journal::append_in_shard(std::string stream,
                              std::vector<new_event> events, uint32_t shard,
                              append_handler done) {
  append_request req;
  req.stream = std::move(stream);
  if (auto err = prepare(req, events)) return done(std::move(err));
  req.shard = shard;
  req.done = std::move(done);
  impl_->enqueue(std::move(req));
}

expected<append_result> journal::append(std::string stream,
                                        std::vector<new_event> events,
                                        expected_version expect) {
  std::promise<expected<append_result>> promise;
  auto future = promise.get_future();
  append(std::move(stream), std::move(events), expect,
         [&promise](expected<append_result> res) {
           promise.set_value(std::move(res));
         });
  return future.get();
}

void journal::delete_events_to(std::string stream, uint64_t to_sequence,
                               write_handler done) {
  if (auto err = check_name(stream, "stream id")) return done(std::move(err));
  if (impl_->cfg.shard_of)
    if (auto shard = impl_->cfg.shard_of(stream))
      // Its events are records of the shard's log, which replicas ship and
      // compare from position 1: a hole there could not be shipped.
      return done(error{errc::invalid_argument,
                        "cannot delete events of stream '" + stream +
                            "': it belongs to shard " +
                            std::to_string(*shard) +
                            ", whose log is replicated whole"});
  impl_->enqueue(
      delete_request{std::move(stream), to_sequence, std::move(done), {}});
}


error journal::delete_events_to(std::string stream, uint64_t to_sequence) {
  return blocking([&](write_handler done) {
    delete_events_to(std::move(stream), to_sequence, std::move(done));
  });
}

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

// -- reads --------------------------------------------------------------------

error journal::read(const read_function& fn) const {
  return impl_->with_read([&](detail::txn_state& st) {
    read_txn txn{st};
    return fn(txn);
  });
}

expected<stream_head> journal::head_of(std::string_view stream) const {
  if (auto err = check_name(stream, "stream id")) return err;
  head_record head;
  if (auto err = impl_->with_read(
          [&](detail::txn_state& st) { return read_head(st, stream, head); }))
    return err;
  return stream_head{std::string{stream}, head.highest, head.deleted_to};
}

expected<uint64_t> journal::highest_sequence(std::string_view stream) const {
  auto head = head_of(stream);
  if (!head) return std::move(head).error();
  return head->highest_sequence;
}

expected<std::vector<event_envelope>> journal::read_stream(
    std::string_view stream, uint64_t from, uint64_t to, uint64_t max) const {
  if (auto err = check_name(stream, "stream id")) return err;
  std::vector<event_envelope> result;
  if (max == 0 || from > to) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    head_record head;
    if (auto err = read_head(st, stream, head)) return err;
    auto first = std::max({from, head.deleted_to + 1, uint64_t{1}});
    auto last = std::min(to, head.highest);
    if (first > last) return {};
    if (last - first >= max) last = first + max - 1;
    // The walk goes newest first: fill the result from the back.
    result.resize(static_cast<size_t>(last - first + 1));
    msgpack::zone zone;
    return walk_stream(st, stream, head, first, last,
                       [&](uint64_t seq, uint64_t pos, std::string_view rec) {
                         return decode_event(rec,
                                             record_origin{stream, seq, pos},
                                             zone, result[seq - first]);
                       });
  });
  if (err) return err;
  return result;
}

namespace {

// Reads events at the positions produced by `next_position` until it returns
// 0 or `max` events are collected.
template <class Next>
error collect(size_t max, Next&& next_position,
              std::vector<event_envelope>& out) {
  msgpack::zone zone;
  while (out.size() < max) {
    uint64_t pos = 0;
    MDB_val rec;
    if (auto err = next_position(pos, rec)) return err;
    if (pos == 0) return {};
    auto& env = out.emplace_back();
    if (auto err =
            decode_event(to_view(rec), record_origin{{}, 0, pos}, zone, env))
      return err;
  }
  return {};
}

}  // namespace

error read_all_at(detail::txn_state& st, uint64_t from_position, size_t max,
                  std::vector<event_envelope>& out) {
  cursor cur;
  if (auto err = cur.open(st, st.dbs->events)) return err;
  be64_key start{from_position};
  MDB_val key = start.val();
  auto op = MDB_SET_RANGE;
  return collect(
      out.size() + max,
      [&](uint64_t& pos, MDB_val& rec) -> error {
        auto rc = cur.get(key, rec, op);
        op = MDB_NEXT;
        if (rc == MDB_NOTFOUND) return {};
        if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
        pos = get_be64(static_cast<const char*>(key.mv_data));
        return {};
      },
      out);
}

expected<std::vector<event_envelope>> journal::read_all(uint64_t from_position,
                                                        size_t max) const {
  std::vector<event_envelope> result;
  if (max == 0) return result;
  auto head = impl_->head.load(std::memory_order_acquire);
  if (from_position <= head)
    result.reserve(static_cast<size_t>(
        std::min<uint64_t>({max, head - from_position + 1, 65536})));
  auto err = impl_->with_read([&](detail::txn_state& st) {
    return read_all_at(st, from_position, max, result);
  });
  if (err) return err;
  return result;
}

expected<std::vector<event_envelope>> journal::read_all_in(
    write_txn& txn, uint64_t from_position, size_t max) {
  std::vector<event_envelope> result;
  if (max == 0) return result;
  if (auto err = read_all_at(txn.state(), from_position, max, result))
    return err;
  return result;
}

expected<journal::filtered_events> journal::read_all_in(
    write_txn& txn, uint64_t from_position, size_t max,
    std::string_view stream_prefix) {
  filtered_events out;
  if (max == 0) return out;
  auto& st = txn.state();
  cursor cur;
  if (auto err = cur.open(st, st.dbs->events)) return err;
  be64_key start{from_position};
  MDB_val key = start.val();
  auto op = MDB_SET_RANGE;
  msgpack::zone zone;
  while (out.scanned < max) {
    MDB_val rec;
    auto rc = cur.get(key, rec, op);
    op = MDB_NEXT;
    if (rc == MDB_NOTFOUND) break;
    if (auto err = st.check(rc, "mdb_cursor_get (events)")) return err;
    auto pos = get_be64(static_cast<const char*>(key.mv_data));
    ++out.scanned;
    out.last_position = pos;
    record_origin origin{{}, 0, pos};
    std::string_view stream;
    if (auto err = peek_event_stream(to_view(rec), origin, stream)) return err;
    if (stream.substr(0, stream_prefix.size()) != stream_prefix) continue;
    auto& env = out.events.emplace_back();
    if (auto err = decode_event(to_view(rec), origin, zone, env)) return err;
  }
  return out;
}

expected<std::vector<event_envelope>> journal::read_tag(std::string_view tag,
                                                        uint64_t from_position,
                                                        size_t max) const {
  if (auto err = check_name(tag, "tag")) return err;
  std::vector<event_envelope> result;
  if (max == 0) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    cursor cur;
    if (auto err = cur.open(st, st.dbs->tags)) return err;
    auto start = name_key(tag, from_position);
    MDB_val key = to_val(start);
    MDB_val unused;
    auto op = MDB_SET_RANGE;
    return collect(
        max,
        [&](uint64_t& pos, MDB_val& rec) -> error {
          auto rc = cur.get(key, unused, op);
          op = MDB_NEXT;
          if (rc == MDB_NOTFOUND) return {};
          if (auto err = st.check(rc, "mdb_cursor_get (tags)")) return err;
          if (!has_name(to_view(key), tag)) return {};
          auto p = key_number(to_view(key));
          be64_key pkey{p};
          auto v = pkey.val();
          auto rc2 = mdb_get(st.txn, st.dbs->events, &v, &rec);
          if (rc2 == MDB_NOTFOUND)
            return error{errc::corrupt_record,
                         "corrupt journal: tag '" + std::string{tag} +
                             "' points to missing global position " +
                             std::to_string(p)};
          if (auto err = st.check(rc2, "mdb_get (event)")) return err;
          pos = p;
          return {};
        },
        result);
  });
  if (err) return err;
  return result;
}

expected<std::vector<stream_head>> journal::list_streams(std::string_view after,
                                                         size_t max) const {
  std::vector<stream_head> result;
  if (max == 0) return result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    // The heads in mnemo.streams, overridden by newer ones in the head log
    // (which also has streams created since it was last folded in).
    std::map<std::string, head_record, std::less<>> logged;
    if (auto err = read_head_log(st, logged)) return err;
    auto next_logged = logged.upper_bound(after);
    auto emit = [&](std::string_view stream, const head_record& head) {
      result.push_back(
          stream_head{std::string{stream}, head.highest, head.deleted_to});
    };
    cursor cur;
    if (auto err = cur.open(st, st.dbs->streams)) return err;
    MDB_val key = to_val(after);
    MDB_val val;
    auto rc = after.empty() ? cur.get(key, val, MDB_FIRST)
                            : cur.get(key, val, MDB_SET_RANGE);
    for (; rc == 0 && result.size() < max; rc = cur.get(key, val, MDB_NEXT)) {
      auto stream = to_view(key);
      if (stream == after) continue;
      for (; next_logged != logged.end() && next_logged->first < stream &&
             result.size() < max;
           ++next_logged)
        emit(next_logged->first, next_logged->second);
      if (result.size() == max) break;
      if (next_logged != logged.end() && next_logged->first == stream) {
        emit(stream, next_logged->second);
        ++next_logged;
        continue;
      }
      head_record head;
      if (!decode_head(val, head)) return corrupt_head(stream);
      emit(stream, head);
    }
    if (rc != MDB_NOTFOUND && rc != 0)
      return st.check(rc, "mdb_cursor_get (streams)");
    for (; next_logged != logged.end() && result.size() < max; ++next_logged)
      emit(next_logged->first, next_logged->second);
    return {};
  });
  if (err) return err;
  return result;
}

// -- state --------------------------------------------------------------------

uint64_t journal::head_position() const noexcept {
  if (impl_->cfg.read_only) {
    // Another process may be writing: read the committed head.
    impl_->with_read([this](detail::txn_state& st) {
      MDB_val key = to_val("head");
      MDB_val val;
      if (mdb_get(st.txn, st.dbs->meta, &key, &val) == 0 && val.mv_size == 8)
        impl_->head = get_be64(static_cast<const char*>(val.mv_data));
      return error{};
    });
  }
  return impl_->head.load(std::memory_order_acquire);
}

uint64_t journal::subscribe(commit_listener fn) {
  std::lock_guard<std::mutex> guard{impl_->listeners_mtx};
  auto token = impl_->next_token++;
  impl_->listeners.emplace(token, std::move(fn));
  return token;
}

void journal::unsubscribe(uint64_t token) {
  std::lock_guard<std::mutex> guard{impl_->listeners_mtx};
  impl_->listeners.erase(token);
}

error journal::failure() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->sticky;
}

const journal_config& journal::config() const noexcept {
  return impl_->cfg;
}

uint64_t journal::format_version() const noexcept {
  return impl_->stored_format;
}

uint64_t journal::map_size() const noexcept {
  return impl_->map_size.load();
}

journal_stats journal::stats() const noexcept {
  auto& c = impl_->stats;
  auto get = [](const std::atomic<uint64_t>& x) {
    return x.load(std::memory_order_relaxed);
  };
  journal_stats result;
  result.commits = get(c.commits);
  result.failed_commits = get(c.failed_commits);
  result.requests = get(c.requests);
  result.events = get(c.events);
  result.map_grows = get(c.map_grows);
  result.compactions = get(c.compactions);
  result.head_folds = get(c.head_folds);
  result.commit_us_sum = get(c.commit_us_sum);
  for (size_t i = 0; i < result.batch_events.size(); ++i)
    result.batch_events[i] = get(c.batch_events[i]);
  for (size_t i = 0; i < result.commit_us.size(); ++i)
    result.commit_us[i] = get(c.commit_us[i]);
  return result;
}

// -- moving streams -----------------------------------------------------------

expected<stream_export> journal::export_stream(std::string_view stream) const {
  if (auto err = check_name(stream, "stream id")) return err;
  stream_export result;
  auto err = impl_->with_read([&](detail::txn_state& st) -> error {
    head_record head;
    if (auto err = read_head(st, stream, head)) return err;
    if (head.highest == 0)
      return error{errc::not_found,
                   "stream '" + std::string{stream} + "' does not exist"};
    result.head = {std::string{stream}, head.highest, head.deleted_to};
    if (head.deleted_to < head.highest) {
      auto first = head.deleted_to + 1;
      result.events.resize(static_cast<size_t>(head.highest - first + 1));
      msgpack::zone zone;
      auto err = walk_stream(
          st, stream, head, first, head.highest,
          [&](uint64_t seq, uint64_t pos, std::string_view rec) {
            return decode_event(rec, record_origin{stream, seq, pos}, zone,
                                result.events[seq - first]);
          });
      if (err) return err;
    }
    // Newest first, then put in order.
    read_txn txn{st};
    auto criteria = snapshot_criteria::latest();
    for (;;) {
      auto snap = snapshot_store::load_in(txn, stream, criteria);
      if (!snap) return snap.error();
      if (!*snap) break;
      auto seq = (*snap)->meta.sequence;
      result.snapshots.push_back(std::move(**snap));
      if (seq == 0) break;
      criteria.max_sequence = seq - 1;
    }
    std::reverse(result.snapshots.begin(), result.snapshots.end());
    return {};
  });
  if (err) return err;
  return result;
}

error journal::import_stream(const stream_export& ex) {
  auto& stream = ex.head.stream_id;
  if (auto err = check_name(stream, "stream id")) return err;
  auto bad = [&](const std::string& why) {
    return error{errc::invalid_argument,
                 "cannot import stream '" + stream + "': " + why};
  };
  auto& head = ex.head;
  if (head.highest_sequence == 0 || head.deleted_to > head.highest_sequence)
    return bad("its head (highest " + std::to_string(head.highest_sequence) +
               ", deleted to " + std::to_string(head.deleted_to) +
               ") is not a stream's");
  if (ex.events.size() != head.highest_sequence - head.deleted_to)
    return bad("it has " + std::to_string(ex.events.size()) +
               " events, its head says " +
               std::to_string(head.highest_sequence - head.deleted_to));
  for (size_t i = 0; i < ex.events.size(); ++i) {
    auto& e = ex.events[i];
    if (e.stream_id != stream || e.sequence != head.deleted_to + i + 1 ||
        e.id.is_nil())
      return bad("event " + std::to_string(i + 1) + " of the export is " +
                 e.stream_id + "/" + std::to_string(e.sequence) +
                 (e.id.is_nil() ? " without an id" : "") + ", expected " +
                 stream + "/" + std::to_string(head.deleted_to + i + 1));
  }
  for (auto& snap : ex.snapshots)
    if (snap.meta.stream_id != stream ||
        snap.meta.sequence > head.highest_sequence)
      return bad("a snapshot belongs to " + snap.meta.stream_id + "/" +
                 std::to_string(snap.meta.sequence));
  // What this journal has of the stream already (an earlier import of an
  // older export): the export must extend it, event id by event id.
  auto moved = moved_to(stream);
  if (!moved) return std::move(moved).error();
  if (*moved)
    return error{errc::stream_moved, "cannot import stream '" + stream +
                                         "': it moved from here to member '" +
                                         **moved +
                                         "' before; moving it back is not "
                                         "supported"};
  auto here = head_of(stream);
  if (!here) return std::move(here).error();
  auto have = here->highest_sequence;
  auto conflict = [&](const std::string& why) {
    return error{errc::version_conflict,
                 "cannot import stream '" + stream + "': " + why};
  };
  if (have > head.highest_sequence)
    return conflict("this journal has version " + std::to_string(have) +
                    ", newer than the export's " +
                    std::to_string(head.highest_sequence));
  if (have > 0 && have < head.deleted_to)
    return conflict("the export lacks events " + std::to_string(have + 1) +
                    ".." + std::to_string(head.deleted_to) +
                    " (deleted at the source) that follow this journal's " +
                    "version " + std::to_string(have));
  if (have > 0) {
    auto mine = read_stream(stream, head.deleted_to + 1, have, UINT64_MAX);
    if (!mine) return std::move(mine).error();
    for (auto& e : *mine)
      if (e.id != ex.events[e.sequence - head.deleted_to - 1].id)
        return conflict("this journal has other events (sequence " +
                        std::to_string(e.sequence) + " differs)");
  }
  auto first = std::max(have, head.deleted_to) + 1;
  if (have == 0 || first <= head.highest_sequence) {
    auto info = std::make_unique<import_info>();
    info->expect = have;
    info->first = first;
    info->deleted_to = head.deleted_to;
    info->highest = head.highest_sequence;
    std::vector<new_event> events;
    for (auto i = first - head.deleted_to - 1; i < ex.events.size(); ++i) {
      auto& e = ex.events[i];
      info->timestamps.push_back(e.timestamp_us);
      events.push_back(new_event{e.id, e.type, e.schema_version, e.payload,
                                 e.correlation_id, e.causation_id, e.tags,
                                 e.metadata});
    }
    if (auto err = import_events(stream, std::move(info), events)) return err;
  }
  // Snapshots in a second commit: saving one again overwrites it, so a
  // repeated import completes an interrupted one.
  if (ex.snapshots.empty()) return {};
  return write([&ex](write_txn& txn) {
    for (auto& snap : ex.snapshots)
      if (auto err = snapshot_store::save_in(txn, snap)) return err;
    return error{};
  });
}

error journal::import_events(const std::string& stream,
                             std::unique_ptr<import_info> info,
                             std::vector<new_event>& events) {
  append_request req;
  req.stream = stream;
  req.import = std::move(info);
  if (auto err = prepare(req, events)) return err;
  std::promise<error> promise;
  auto future = promise.get_future();
  req.done = [&promise](expected<append_result> res) {
    promise.set_value(res ? error{} : std::move(res).error());
  };
  impl_->enqueue(std::move(req));
  return future.get();
}

error journal::release_stream(std::string stream, std::string destination) {
  if (auto err = check_name(stream, "stream id")) return err;
  if (auto err = check_name(destination, "member id")) return err;
  return blocking([&](write_handler done) {
    impl_->enqueue(delete_request{std::move(stream),
                                  std::numeric_limits<uint64_t>::max(),
                                  std::move(done), std::move(destination)});
  });
}

expected<std::optional<std::string>> journal::moved_to(
    std::string_view stream) const {
  expected<std::optional<std::string>> result{std::nullopt};
  auto err = read([&](read_txn& txn) {
    result = table_store::get_in(txn, moved_table, stream);
    return error{};
  });
  if (err) return err;
  return result;
}

expected<uint64_t> journal::release_generation() const {
  expected<std::optional<std::string>> value{std::nullopt};
  auto err = read([&](read_txn& txn) {
    value = table_store::get_in(txn, journal_table, release_generation_key);
    return error{};
  });
  if (err) return err;
  if (!value) return std::move(value).error();
  return *value ? uint64_t{std::strtoull((*value)->c_str(), nullptr, 10)}
                : uint64_t{0};
}

snapshot_store& journal::snapshots() noexcept {
  return impl_->snapshots;
}

offset_store& journal::offsets() noexcept {
  return impl_->offsets;
}

dead_letter_store& journal::dead_letters() noexcept {
  return impl_->dead_letters;
}

}  // namespace mnemo::persistence

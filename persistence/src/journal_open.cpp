// Opening and closing a journal: the data directory (checked, locked against
// other writing processes, claimed against a second open in this process),
// the LMDB environment and its databases, the format version (read, or
// written and upgraded by a writable open) and the directory's replica id.
// `journal::open` starts the writer and completer threads (writer_loop.cpp)
// and `~journal` stops them, then closes the environment.
//
// Owns, of journal::impl: env, lock_fd, claimed, dbs, stored_format,
// replica_id, and the initial values of head and map_size (from the meta
// database and the environment). Invariant: one environment per directory
// and process (lmdb.h, "caveats"), and one writing process per directory.

#include "mnemo/persistence/journal.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>

#include "journal_impl.hpp"

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
    std::lock_guard<std::mutex> guard{impl_->completions.mtx};
    impl_->completions.stopping = true;
  }
  impl_->completions.cv.notify_all();
  if (impl_->completer.joinable()) impl_->completer.join();
  if (impl_->env != nullptr) mdb_env_close(impl_->env);
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
  release_directory(impl_->claimed);
}

}  // namespace mnemo::persistence

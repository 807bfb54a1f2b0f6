#pragma once

// The raw LMDB baseline shared by the benchmarks: what LMDB alone does with
// the same record size and commit batch, and the record size mnemo stores.
// Failures throw std::runtime_error.

#include <lmdb.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace raw_lmdb {

inline void check(int rc, const char* what) {
  if (rc != 0)
    throw std::runtime_error(std::string{"raw LMDB "} + what + ": " +
                             mdb_strerror(rc));
}

/// A plain LMDB loop on one thread: records under 8-byte big-endian keys
/// with MDB_APPEND, one commit per batch, in an environment of its own in
/// `dir` (created; removed with its contents on destruction). Successive
/// `run`s go on appending to the same database, so that runs interleaved
/// with other measurements see a database that grows as in one long run.
class loop {
 public:
  /// `flags`: environment flags, e.g. MDB_NOTLS | MDB_NOSYNC.
  loop(const std::filesystem::path& dir, unsigned flags) : dir_(dir) {
    std::filesystem::create_directories(dir);
    check(mdb_env_create(&env_), "mdb_env_create");
    try {
      check(mdb_env_set_mapsize(env_, size_t{16} << 30), "set_mapsize");
      check(mdb_env_open(env_, dir.c_str(), flags, 0644), "mdb_env_open");
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
      check(mdb_dbi_open(txn, nullptr, 0, &dbi_), "mdb_dbi_open");
      check(mdb_txn_commit(txn), "mdb_txn_commit");
    } catch (...) {
      mdb_env_close(env_);
      throw;
    }
  }
  ~loop() {
    mdb_env_close(env_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// Writes `events` records of `record_bytes`, one commit per `batch`;
  /// returns the seconds it took.
  double run(size_t record_bytes, uint64_t batch, uint64_t events) {
    std::vector<char> record(record_bytes, 'r');
    char key_bytes[8];
    auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < events;) {
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
      for (uint64_t end = std::min(events, i + batch); i < end; ++i) {
        auto k = ++last_key_;
        for (int b = 7; b >= 0; --b, k >>= 8)
          key_bytes[b] = static_cast<char>(k & 0xff);
        MDB_val key{8, key_bytes};
        MDB_val val{record.size(), record.data()};
        if (auto rc = mdb_put(txn, dbi_, &key, &val, MDB_APPEND)) {
          mdb_txn_abort(txn);
          check(rc, "mdb_put");
        }
      }
      check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
    std::chrono::duration<double> secs = std::chrono::steady_clock::now() - t0;
    return secs.count();
  }

 private:
  std::filesystem::path dir_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  uint64_t last_key_ = 0;
};

/// Records/s of one `loop` run in a fresh environment in `dir`.
inline double rate(const std::filesystem::path& dir, unsigned flags,
                   size_t record_bytes, uint64_t batch, uint64_t events) {
  loop l{dir, flags};
  return static_cast<double>(events) / l.run(record_bytes, batch, events);
}

/// Size of the first stored event record of a closed journal directory;
/// 0 if it cannot be read.
inline size_t record_bytes(const std::filesystem::path& dir) {
  MDB_env* env = nullptr;
  size_t result = 0;
  if (mdb_env_create(&env) != 0) return 0;
  mdb_env_set_maxdbs(env, 16);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  MDB_cursor* cur = nullptr;
  MDB_val key, val;
  if (mdb_env_open(env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644) == 0 &&
      mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0) {
    if (mdb_dbi_open(txn, "mnemo.events", 0, &dbi) == 0 &&
        mdb_cursor_open(txn, dbi, &cur) == 0) {
      if (mdb_cursor_get(cur, &key, &val, MDB_FIRST) == 0) result = val.mv_size;
      mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
  }
  mdb_env_close(env);
  return result;
}

}  // namespace raw_lmdb

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

/// Records/s of a plain LMDB loop on one thread: `events` records of
/// `record_bytes` under 8-byte big-endian keys with MDB_APPEND, one commit
/// per `batch` records, environment flags `flags` (e.g. MDB_NOTLS |
/// MDB_NOSYNC). Removes `dir` afterwards.
inline double rate(const std::filesystem::path& dir, unsigned flags,
                   size_t record_bytes, uint64_t batch, uint64_t events) {
  std::filesystem::create_directories(dir);
  MDB_env* env = nullptr;
  check(mdb_env_create(&env), "mdb_env_create");
  check(mdb_env_set_mapsize(env, size_t{16} << 30), "set_mapsize");
  check(mdb_env_open(env, dir.c_str(), flags, 0644), "mdb_env_open");
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  check(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
  check(mdb_dbi_open(txn, nullptr, 0, &dbi), "mdb_dbi_open");
  check(mdb_txn_commit(txn), "mdb_txn_commit");
  std::vector<char> record(record_bytes, 'r');
  char key_bytes[8];
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < events;) {
    check(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    for (uint64_t end = std::min(events, i + batch); i < end; ++i) {
      auto k = i + 1;
      for (int b = 7; b >= 0; --b, k >>= 8)
        key_bytes[b] = static_cast<char>(k & 0xff);
      MDB_val key{8, key_bytes};
      MDB_val val{record.size(), record.data()};
      check(mdb_put(txn, dbi, &key, &val, MDB_APPEND), "mdb_put");
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  std::chrono::duration<double> secs = std::chrono::steady_clock::now() - t0;
  mdb_env_close(env);
  std::filesystem::remove_all(dir);
  return static_cast<double>(events) / secs.count();
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

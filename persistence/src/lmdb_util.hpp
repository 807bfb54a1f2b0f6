#pragma once

// Private: LMDB handles, key encodings and the one translation of LMDB
// return codes into mnemo errors.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <lmdb.h>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

/// Longest stream id, tag or offset name in bytes: LMDB's key limit is 511
/// and composite keys append a separator plus 8 bytes.
constexpr size_t max_name_size = 400;

/// Every sequence divisible by this has an entry in the stream index; reads
/// walk the per-stream back links from the nearest such checkpoint, so one
/// group commit touches few index pages however many streams it writes
/// (format 3; docs/format.md, section 2.3).
constexpr uint64_t checkpoint_interval = 128;

/// The interval of formats 1 and 2. Its multiples include every multiple of
/// 128, so their checkpoints serve format 3 reads; a deletion removes the
/// checkpoints of both intervals, so an upgraded directory keeps none of a
/// deleted event.
constexpr uint64_t legacy_checkpoint_interval = 32;
static_assert(checkpoint_interval % legacy_checkpoint_interval == 0);

/// Translates an LMDB (or errno) return code into an error that keeps the
/// operation and mdb_strerror's text. This is the only place that maps
/// LMDB codes.
error lmdb_error(int rc, std::string_view operation);

/// `lmdb_error` for a failed commit of the environment in `directory`.
/// LMDB reports a write the kernel cut short as EIO and loses the reason:
/// the file size limit (RLIMIT_FSIZE) or a full file system that still had
/// blocks for part of the write. When data.mdb is at the limit, or the file
/// system has less than 1 MiB left, that EIO is `storage_full` and says so.
error lmdb_commit_error(int rc, std::string_view operation,
                        const std::string& directory);

/// Checks a stream id, tag or name: non-empty, at most `max_name_size`
/// bytes, no NUL byte. `what` names the argument in the message.
error check_name(std::string_view name, std::string_view what);

/// The named databases of one environment (see docs/format.md).
struct databases {
  MDB_dbi meta = 0;
  MDB_dbi events = 0;
  MDB_dbi stream_index = 0;
  MDB_dbi streams = 0;
  MDB_dbi event_ids = 0;
  MDB_dbi tags = 0;
  MDB_dbi snapshots = 0;
  MDB_dbi offsets = 0;
  /// 0 when a read-only open found no such database (written by a build
  /// that predates it): reads treat it as empty.
  MDB_dbi tables = 0;
  MDB_dbi dead_letters = 0;
  /// Added in format 2; 0 when a read-only open of a format 1 directory
  /// found none.
  MDB_dbi head_log = 0;
  /// Shard logs of a replicated journal (replica_log.hpp); 0 when a
  /// read-only open found none.
  MDB_dbi shard_log = 0;
};

namespace detail {

/// State behind `write_txn` and `read_txn`. `fatal_rc` records the first
/// LMDB code that must abort the whole group commit (map or txn full).
struct txn_state {
  MDB_txn* txn = nullptr;
  const databases* dbs = nullptr;
  int fatal_rc = 0;

  /// Wraps an LMDB return code: 0 -> no error; MDB_MAP_FULL and
  /// MDB_TXN_FULL are remembered in `fatal_rc` for the writer to handle.
  error check(int rc, std::string_view operation);
};

}  // namespace detail

inline MDB_val to_val(std::string_view x) noexcept {
  return MDB_val{x.size(), const_cast<char*>(x.data())};
}

inline std::string_view to_view(const MDB_val& x) noexcept {
  return {static_cast<const char*>(x.mv_data), x.mv_size};
}

inline void put_be64(char* out, uint64_t x) noexcept {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(x & 0xff);
    x >>= 8;
  }
}

inline uint64_t get_be64(const char* in) noexcept {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = (x << 8) | static_cast<uint8_t>(in[i]);
  return x;
}

/// An 8-byte big-endian key: byte order equals numeric order, so
/// MDB_APPEND works with LMDB's default comparison.
struct be64_key {
  char bytes[8];
  explicit be64_key(uint64_t x) noexcept { put_be64(bytes, x); }
  MDB_val val() noexcept { return MDB_val{8, bytes}; }
};

/// Composite key `name NUL be64(n)`: all keys of one name are contiguous and
/// ordered by n.
inline std::string name_key(std::string_view name, uint64_t n) {
  std::string key;
  key.reserve(name.size() + 9);
  key.append(name);
  key.push_back('\0');
  char buf[8];
  put_be64(buf, n);
  key.append(buf, 8);
  return key;
}

/// Returns whether `key` is a composite key of `name`.
inline bool has_name(std::string_view key, std::string_view name) noexcept {
  return key.size() == name.size() + 9 &&
         key.compare(0, name.size(), name) == 0 && key[name.size()] == '\0';
}

/// Returns the number part of a composite key. Precondition: has_name.
inline uint64_t key_number(std::string_view key) noexcept {
  return get_be64(key.data() + key.size() - 8);
}

/// An LMDB cursor closed on scope exit.
class cursor {
 public:
  cursor() = default;
  cursor(const cursor&) = delete;
  cursor& operator=(const cursor&) = delete;
  ~cursor() {
    if (cur_ != nullptr) mdb_cursor_close(cur_);
  }
  /// Opens the cursor on `dbi` in `st`.
  error open(detail::txn_state& st, MDB_dbi dbi) {
    return st.check(mdb_cursor_open(st.txn, dbi, &cur_), "mdb_cursor_open");
  }
  /// Positions the cursor; returns the LMDB code (MDB_NOTFOUND at the end).
  int get(MDB_val& key, MDB_val& val, MDB_cursor_op op) noexcept {
    return mdb_cursor_get(cur_, &key, &val, op);
  }
  /// Deletes the entry under the cursor; returns the LMDB code.
  int del() noexcept { return mdb_cursor_del(cur_, 0); }

 private:
  MDB_cursor* cur_ = nullptr;
};

}  // namespace mnemo::persistence

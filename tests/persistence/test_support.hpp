#pragma once

// Helpers shared by the persistence suites: a temporary data directory per
// test and a journal opened on it.

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <lmdb.h>

#include "mnemo/persistence/journal.hpp"

namespace mnemo::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
/// destruction.
class temp_dir {
 public:
  temp_dir() {
    static std::atomic<int> counter{0};
    auto base = std::filesystem::temp_directory_path();
    path_ = base / ("mnemo-test-" + std::to_string(::getpid()) + "-" +
                    std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  /// A subdirectory path (not created).
  std::string sub(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

/// Describes `x` for a Boost.Test message: "ok" or the error. (Messages are
/// built even when the check passes, so never call `error()` directly.)
template <class T>
std::string why(const persistence::expected<T>& x) {
  return x ? std::string{"ok"} : x.error().to_string();
}

/// Opens a journal in `dir` with `mode`; fails the test on error.
inline std::unique_ptr<persistence::journal> open_journal(
    const std::string& dir,
    persistence::durability mode = persistence::durability::nosync,
    uint64_t initial_map_size = uint64_t{64} << 20) {
  persistence::journal_config cfg;
  cfg.directory = dir;
  cfg.mode = mode;
  cfg.initial_map_size = initial_map_size;
  auto j = persistence::journal::open(cfg);
  BOOST_REQUIRE_MESSAGE(j, (j ? std::string{} : j.error().to_string()));
  return std::move(j).value();
}

/// A journal in its own temporary directory.
struct journal_fixture {
  temp_dir dir;
  std::unique_ptr<persistence::journal> j = open_journal(dir.sub("data"));

  /// Closes and reopens the journal on the same directory.
  void reopen() {
    j.reset();
    j = open_journal(dir.sub("data"));
  }
};

/// A `new_event` of type `type` whose payload is the msgpack map
/// {"v": value}.
persistence::new_event make_event(const std::string& type,
                                  const std::string& value);

/// Returns the "v" field of a payload made by `make_event`.
std::string event_value(const persistence::event_envelope& env);

/// Runs `f(txn, dbi)` in a raw LMDB write transaction on database `dbname`
/// of the closed journal in `dir` (as a bug or another tool might write),
/// then commits it.
template <class F>
void with_raw_db(const std::string& dir, const char* dbname, F&& f) {
  MDB_env* env = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  BOOST_REQUIRE_EQUAL(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  BOOST_REQUIRE_EQUAL(mdb_dbi_open(txn, dbname, 0, &dbi), 0);
  f(txn, dbi);
  BOOST_REQUIRE_EQUAL(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

/// Writes `key` = `value` into database `db` of the closed journal in `dir`
/// with plain LMDB, as a bug, another tool or an older build might.
inline void raw_put(const std::string& dir, const char* db,
                    const std::string& key, const std::string& value) {
  with_raw_db(dir, db, [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    BOOST_REQUIRE_EQUAL(mdb_put(txn, dbi, &k, &v, 0), 0);
  });
}

/// `be64(n)` as 8 bytes.
inline std::string be64_bytes(uint64_t n) {
  std::string buf(8, '\0');
  for (int i = 7; i >= 0; --i, n >>= 8) buf[i] = static_cast<char>(n & 0xff);
  return buf;
}

/// Overwrites the format version stored in a closed journal directory.
inline void set_format_version(const std::string& dir, uint64_t version) {
  raw_put(dir, "mnemo.meta", "format_version", be64_bytes(version));
}

/// Holds the writer inside a group commit until `release`, so that the
/// requests made meanwhile all join the next one.
struct writer_gate {
  std::promise<void> entered;
  std::promise<void> released;
  void hold(persistence::journal& jj) {
    auto in = std::make_shared<std::shared_future<void>>(
        released.get_future().share());
    jj.write(
        [this, in](persistence::write_txn&) {
          entered.set_value();
          in->wait();
          return persistence::error{};
        },
        [](persistence::error) {});
    entered.get_future().wait();
  }
  void release() { released.set_value(); }
};

// The error a test's handler returns to simulate its own failure.
inline persistence::error simulated_failure() {
  return persistence::error{persistence::errc::invalid_argument,
                            "simulated handler failure"};
}

}  // namespace mnemo::test

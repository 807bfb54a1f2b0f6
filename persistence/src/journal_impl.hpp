#pragma once

// Private: the state behind `journal` and the group-commit writer.

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <lmdb.h>

#include "lmdb_util.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

namespace mnemo::persistence {

/// Version of the on-disk format this build reads and writes.
constexpr uint32_t format_version = 1;

/// An append waiting for the writer. Bodies are pre-encoded by the caller.
struct append_request {
  std::string stream;
  std::vector<event_id> ids;
  std::string bodies;
  std::vector<size_t> body_ends;
  std::vector<std::vector<std::string>> tags;
  expected_version expected;
  append_handler done;
};

struct delete_request {
  std::string stream;
  uint64_t to_sequence;
  write_handler done;
};

struct write_request {
  write_function fn;
  write_handler done;
};

using request = std::variant<append_request, delete_request, write_request>;

/// The result of one request inside a group commit.
using outcome = std::variant<error, append_result>;

struct journal::impl {
  explicit impl(journal& self, journal_config config)
    : cfg(std::move(config)), snapshots(self), offsets(self) {
  }

  journal_config cfg;
  MDB_env* env = nullptr;
  databases dbs;
  // Readers hold it shared; the writer holds it exclusively to resize.
  mutable std::shared_mutex resize_mtx;
  std::atomic<uint64_t> head{0};
  std::atomic<uint64_t> map_size{0};

  std::mutex mtx;
  std::condition_variable cv;
  std::vector<request> queue;
  bool stopping = false;
  error sticky; // guarded by mtx
  std::thread writer;

  std::mutex listeners_mtx;
  std::map<uint64_t, commit_listener> listeners;
  uint64_t next_token = 1;

  snapshot_store snapshots;
  offset_store offsets;

  // -- setup (journal.cpp) ---------------------------------------------------

  error open_env();
  error open_databases();

  // -- reads (journal.cpp) ---------------------------------------------------

  /// Runs `f(txn_state&)` in a fresh read transaction.
  template <class F>
  error with_read(F&& f) const {
    std::shared_lock<std::shared_mutex> guard{resize_mtx};
    detail::txn_state st;
    st.dbs = &dbs;
    auto rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &st.txn);
    if (rc != 0)
      return lmdb_error(rc, "mdb_txn_begin (read)");
    auto err = f(st);
    mdb_txn_abort(st.txn);
    return err;
  }

  // -- writer (writer.cpp) ---------------------------------------------------

  /// Queues `req`, or answers it with `journal_closed` when stopping.
  void enqueue(request req);
  void run();
  void process(std::vector<request>& batch);
  int try_commit(std::vector<request>& batch, std::vector<outcome>& out,
                 uint64_t& new_head, bool& wrote_events);
  int apply(detail::txn_state& st, append_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply(detail::txn_state& st, delete_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  int apply(detail::txn_state& st, write_request& req, outcome& out,
            uint64_t& next_position, int64_t now_us);
  bool grow_map();
  void notify(uint64_t new_head);
};

/// Reads the head record of `stream` in `st`; zeroes if absent.
error read_head(detail::txn_state& st, std::string_view stream,
                stream_head& out);

/// Current time in microseconds since the Unix epoch.
int64_t now_micros() noexcept;

} // namespace mnemo::persistence
